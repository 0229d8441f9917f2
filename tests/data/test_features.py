"""Per-article features: markup counting, the Portuguese score, text hashing, shard streaming."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from ptwiki_llm.data.features import (
    FEATURES_SCHEMA,
    PORTUGUESE_STOPWORDS,
    compute_features,
    markup_count,
    markup_per_kchar,
    portuguese_score,
    shard_features,
    text_sha256,
)
from tests.data.conftest import write_shard

LISBOA = (
    "Lisboa é a capital e a maior cidade de Portugal, situada na margem norte do estuário do rio Tejo. "
    "A cidade é uma das mais antigas da Europa ocidental e foi governada por romanos, visigodos e "
    "mouros antes de ser conquistada em 1147. O terramoto de 1755 destruiu grande parte do centro "
    "histórico, que depois foi reconstruído segundo um plano do Marquês de Pombal."
)
ENGLISH = (
    "The Amazon River in South America is the largest river by discharge volume of water in the world. "
    "Its headwaters were long thought to lie on Nevado Mismi, until a study placed them on the Mantaro "
    "River in Peru. Brazilians call the upper section the Solimões, and the river is known as the "
    "Amazon only after it meets the Rio Negro at Manaus, the largest city on its banks."
)


# --- markup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("Texto limpo, sem nenhuma marcação.", 0),
        ("{{Info/Cidade|nome=Lisboa}}", 2),  # {{ and }}
        ("[[Brasil|país]] e [[Portugal]]", 4),
        ('<ref name="a">Fonte</ref>', 2),  # the opening tag counts once, not as tag + "<ref"
        ("um texto cortado<ref", 1),
        ('{| class="wikitable"\n|-\n| a\n|}', 2),  # {| and |- ("|}" is not in the list)
        ('<br/> <br /> <div class="x">a</div>', 4),
        ("2 < 3 e 5 > 4", 0),  # a comparison is not a tag
        ("{{{1}}}", 2),  # a template parameter: one {{ and one }}
    ],
)
def test_markup_count(text: str, expected: int) -> None:
    assert markup_count(text) == expected


def test_markup_per_kchar() -> None:
    assert markup_per_kchar("") == 0.0
    assert markup_per_kchar("a" * 998 + "{{") == pytest.approx(1.0)
    assert markup_per_kchar("[[x]]" + "a" * 495) == pytest.approx(4.0)  # 2 tokens in 500 chars


# --- Portuguese score ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0.0),
        ("123 456, 789.", 0.0),  # no words at all
        ("O gato e o cão", 3 / 5),  # o, e, o
        ("A CASA DO POVO", 2 / 4),  # lowercased: a, do
        ("disse-lhe que d'água", 2 / 5),  # disse, lhe, que, d, água: lhe and que
        ("Ele é médico e não está aqui", 6 / 7),  # only "médico" is not a function word
    ],
)
def test_portuguese_score_hand_computed(text: str, expected: float) -> None:
    assert portuguese_score(text) == pytest.approx(expected)


def test_portuguese_score_is_normalization_independent() -> None:
    nfd = unicodedata.normalize("NFD", "Ele é médico e não está aqui")
    assert nfd != "Ele é médico e não está aqui"
    assert portuguese_score(nfd) == pytest.approx(6 / 7)


def test_portuguese_score_separates_languages() -> None:
    assert portuguese_score(LISBOA) > 0.3
    assert portuguese_score(ENGLISH) < 0.1


def test_stopwords_are_lowercase_nfc() -> None:
    assert 150 <= len(PORTUGUESE_STOPWORDS) <= 300
    for word in PORTUGUESE_STOPWORDS:
        assert word == word.lower() == unicodedata.normalize("NFC", word)
    # frequent English words that would lift English text
    assert not {"for", "to", "in", "on", "the", "is"} & PORTUGUESE_STOPWORDS


# --- hashing ---------------------------------------------------------------------------------


def test_text_sha256_normalizes_whitespace_and_unicode() -> None:
    assert text_sha256("  a\n\n b\u00a0c\t") == hashlib.sha256(b"a b c").hexdigest()
    assert text_sha256(unicodedata.normalize("NFD", "ação")) == text_sha256("ação")
    assert text_sha256("ação") != text_sha256("acao")


# --- streaming over shards -------------------------------------------------------------------


def test_compute_features_columns_and_values(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a.parquet", [(7, "Lisboa", LISBOA), (8, "Amazon", ENGLISH)])
    b = write_shard(tmp_path / "b.parquet", [(9, None, None)])

    df = compute_features([a, b])

    assert list(df.columns) == FEATURES_SCHEMA.names
    assert str(df["id"].dtype) == "Int64" and str(df["duplicate_of"].dtype) == "Int64"
    assert df["id"].tolist() == [7, 8, 9]
    assert df["title_chars"].tolist() == [6, 6, 0]
    assert df["text_chars"].tolist() == [len(LISBOA), len(ENGLISH), 0]
    assert df["markup_per_kchar"].tolist() == [0.0, 0.0, 0.0]
    assert df["portuguese_score"].tolist() == [portuguese_score(LISBOA), portuguese_score(ENGLISH), 0.0]
    assert df["text_sha256"].tolist() == [text_sha256(LISBOA), text_sha256(ENGLISH), text_sha256("")]
    assert df["duplicate_of"].isna().all()


def test_duplicate_of_points_at_lowest_id_across_shards(tmp_path: Path) -> None:
    spaced = "  " + LISBOA.replace(". ", ".\n\n") + "\n"
    a = write_shard(tmp_path / "a.parquet", [(10, "Lisboa", LISBOA), (11, "Amazon", ENGLISH)])
    b = write_shard(
        tmp_path / "b.parquet",
        [(3, "Lisboa (antiga)", unicodedata.normalize("NFD", LISBOA)), (12, "Lisboa (cópia)", spaced)],
    )

    df = compute_features([a, b]).set_index("id")

    # id 3 is the lowest, so it is the original even though it was read after id 10
    assert df.loc[3, "duplicate_of"] is pd.NA
    assert df.loc[10, "duplicate_of"] == 3
    assert df.loc[12, "duplicate_of"] == 3
    assert df.loc[11, "duplicate_of"] is pd.NA


def test_small_batches_and_workers_give_the_same_features(tmp_path: Path) -> None:
    rows = [(i, f"Artigo {i}", LISBOA if i % 3 else f"{LISBOA} Variante {i}.") for i in range(1, 12)]
    shards = [
        write_shard(tmp_path / "a.parquet", rows[:6]),
        write_shard(tmp_path / "b.parquet", rows[6:]),
    ]

    whole = compute_features(shards)
    in_pieces = pa.concat_tables(shard_features(p, batch_rows=2) for p in shards)

    assert in_pieces.drop_columns(["duplicate_of"]).equals(
        pa.Table.from_pandas(whole, schema=FEATURES_SCHEMA, preserve_index=False).drop_columns(["duplicate_of"])
    )
    pd.testing.assert_frame_equal(compute_features(shards, workers=2), whole)
    # ids not divisible by 3 share one text; the lowest of them (1) is the original
    assert whole.set_index("id")["duplicate_of"].dropna().to_dict() == {i: 1 for i in range(2, 12) if i % 3}


def test_no_shards_gives_an_empty_frame() -> None:
    df = compute_features([])
    assert len(df) == 0
    assert list(df.columns) == FEATURES_SCHEMA.names
