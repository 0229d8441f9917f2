"""Per-article quality features, computed shard by shard from the article parquet files.

The validate stage runs its expectations over these features instead of the texts, so the data
it hands to Great Expectations is a few numbers per article, never the corpus text itself.
Reading goes record batch by record batch, which keeps memory flat at ~1.1M articles.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Wikitext or HTML that a clean plain text should not contain. The tag alternative comes before
# `<ref` so that a complete `<ref name="x">` counts once, while a `<ref` cut off before its `>`
# still counts. `{{{`/`}}}` (template parameters) count as one `{{`/`}}` each.
MARKUP_RE = re.compile(
    r"\{\{|\}\}|\[\[|\]\]|\{\||\|-"
    r"|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>"
    r"|<ref"
)

# Letters only: digits, underscores and punctuation are not words, and an apostrophe or hyphen
# splits ("d'água" -> "d", "água"; "disse-lhe" -> "disse", "lhe"), which suits the list below.
_WORD_RE = re.compile(r"[^\W\d_]+")

# Common Portuguese function words, lowercase and in NFC (texts are NFC-normalized before lookup,
# so "é" typed as e + combining accent still matches). Words just as frequent in English ("for")
# are left out so that English text scores low; of the overlap only "a", "as", "do", "no" and "me"
# remain, 3-4% of English running text. Measured: English prose 0.02-0.05 (GPL-3 paragraphs
# at most 0.11), Spanish ~0.11, Portuguese prose (FaQuAD, SQuAD-pt, ptwiki paragraphs) 0.25-0.53.
_STOPWORDS_TEXT = """
    o a os as um uma uns umas
    de do da dos das em no na nos nas ao aos à às
    pelo pela pelos pelas por para pra com sem sob sobre entre até após desde contra perante
    durante mediante conforme segundo através além dentro fora
    num numa nuns numas dum duma
    neste nesta nestes nestas nesse nessa nesses nessas naquele naquela naqueles naquelas
    deste desta destes destas desse dessa desses dessas daquele daquela daqueles daquelas
    dele dela deles delas nele nela neles nelas disso disto daquilo nisso nisto naquilo
    àquele àquela àqueles àquelas
    e ou mas porém contudo todavia entretanto portanto pois porque que se quando como embora
    enquanto nem também ainda já quanto onde cujo cuja cujos cujas qual quais quem
    eu tu ele ela nós vós eles elas você vocês me te lhe lhes vos mim ti si comigo consigo
    meu minha meus minhas teu tua seu sua seus suas nosso nossa nossos nossas
    este esta estes estas esse essa esses essas aquele aquela aqueles aquelas isto isso aquilo
    outro outra outros outras todo toda todos todas tudo algum alguma alguns algumas
    nenhum nenhuma muito muita muitos muitas pouco pouca poucos poucas mesmo mesma mesmos mesmas
    cada vários várias tal tais tanto tanta tantos tantas ambos ambas demais
    não sim mais menos bem mal aqui ali lá então sempre nunca apenas somente só quase tão
    depois antes hoje agora assim
    é são foi foram era eram ser sido sendo será serão seria seriam seja sejam fosse fossem
    está estão estava estavam estar esteve estiveram
    há havia haver houve haviam
    tem têm tinha tinham ter teve tiveram tido tendo
    pode podem podia podiam poderia poderiam pôde
"""
PORTUGUESE_STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())


def markup_count(text: str) -> int:
    """Residual markup tokens (``{{``, ``}}``, ``[[``, ``]]``, ``<ref``, ``{|``, ``|-``, HTML tags)."""
    return sum(1 for _ in MARKUP_RE.finditer(text))


def markup_per_kchar(text: str) -> float:
    """Markup tokens per 1,000 characters; 0.0 for an empty text (nothing to be dirty)."""
    return markup_count(text) * 1000.0 / len(text) if text else 0.0


def _nfc(text: str) -> str:
    # is_normalized is a fast scan; most texts are already NFC and need no copy.
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _score_nfc(nfc_text: str) -> float:
    words = _WORD_RE.findall(nfc_text.lower())
    if not words:
        return 0.0
    return sum(map(PORTUGUESE_STOPWORDS.__contains__, words)) / len(words)


def portuguese_score(text: str) -> float:
    """Share of word tokens that are Portuguese function words (0.0 when there are no words).

    Running Portuguese prose scores ~0.35-0.45; English ~0.03-0.06. It is a cheap language
    check, not language identification: Spanish and Galician share many of these words.
    """
    return _score_nfc(_nfc(text))


def _hash_nfc(nfc_text: str) -> str:
    # split() without arguments splits on all Unicode whitespace (NBSP included) and drops the
    # ends, so copies that differ only in spacing or line breaks hash the same.
    return hashlib.sha256(" ".join(nfc_text.split()).encode("utf-8")).hexdigest()


def text_sha256(text: str) -> str:
    """sha256 hex digest of the NFC-normalized, whitespace-collapsed text."""
    return _hash_nfc(_nfc(text))


FEATURES_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("title", pa.string()),
        ("title_chars", pa.int64()),
        ("text_chars", pa.int64()),
        ("markup_per_kchar", pa.float64()),
        ("portuguese_score", pa.float64()),
        ("text_sha256", pa.string()),
        ("duplicate_of", pa.int64()),
    ]
)

_READ_COLUMNS = ["id", "title", "text"]
_BATCH_ROWS = 1024


def _batch_features(ids: list[int | None], titles: list[str | None], texts: list[str | None]) -> pa.Table:
    title_chars, text_chars, markup, scores, hashes = [], [], [], [], []
    for title, raw in zip(titles, texts, strict=True):
        text = raw or ""
        nfc = _nfc(text)
        title_chars.append(len(title or ""))
        text_chars.append(len(text))
        markup.append(markup_per_kchar(text))
        scores.append(_score_nfc(nfc))
        hashes.append(_hash_nfc(nfc))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "title": pa.array(titles, pa.string()),
            "title_chars": pa.array(title_chars, pa.int64()),
            "text_chars": pa.array(text_chars, pa.int64()),
            "markup_per_kchar": pa.array(markup, pa.float64()),
            "portuguese_score": pa.array(scores, pa.float64()),
            "text_sha256": pa.array(hashes, pa.string()),
            # filled in once every shard is read: a duplicate may sit in another shard
            "duplicate_of": pa.nulls(len(hashes), pa.int64()),
        },
        schema=FEATURES_SCHEMA,
    )


def iter_shard_batches(path: Path, batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """The id, title and text columns of one shard, a record batch at a time."""
    with pq.ParquetFile(path) as pf:
        yield from pf.iter_batches(batch_size=batch_rows or _BATCH_ROWS, columns=_READ_COLUMNS)


def shard_features(path: Path, batch_rows: int | None = None) -> pa.Table:
    """Features of one shard, ``duplicate_of`` still empty (it needs every shard)."""
    parts = [
        _batch_features(
            batch.column("id").to_pylist(),
            batch.column("title").to_pylist(),
            batch.column("text").to_pylist(),
        )
        for batch in iter_shard_batches(Path(path), batch_rows)
    ]
    return pa.concat_tables(parts) if parts else FEATURES_SCHEMA.empty_table()


def _mark_duplicates(df: pd.DataFrame) -> None:
    """Set ``duplicate_of`` to the lowest id sharing the row's text hash, unless that is the row's own."""
    first = df.groupby("text_sha256", sort=False)["id"].transform("min").astype("Int64")
    # Compared with NA (a null id) the result is NA: the row then keeps the lowest id, as the
    # copy of an identified article is a duplicate whatever its own id.
    later = first.ne(df["id"]).fillna(True).astype(bool)
    df["duplicate_of"] = first.where(later, pd.NA).astype("Int64")


def compute_features(shard_paths: Iterable[Path], workers: int = 1) -> pd.DataFrame:
    """One row per article of the shards, in shard order; see ``FEATURES_SCHEMA`` for the columns.

    ``workers`` > 1 computes shards in parallel processes (each shard's text stays in its worker).
    ``id`` and ``duplicate_of`` are nullable ``Int64``.
    """
    paths = [Path(p) for p in shard_paths]
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
            tables = list(pool.map(shard_features, paths))
    else:
        tables = [shard_features(p) for p in paths]
    table = pa.concat_tables(tables) if tables else FEATURES_SCHEMA.empty_table()
    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    # types_mapper makes the count columns nullable too; they never hold nulls, keep them plain
    df = df.astype({"title_chars": "int64", "text_chars": "int64"})
    _mark_duplicates(df)
    return df
