"""Example questions that work: asked about articles of the current index, kept only when retrieval finds them.

Questions come from an article's lead sentence: "Onde nasceu X?" and "Em que ano morreu X?" where the
lead gives a person's birthplace and dates ("X (Pádua, 1431 — Mântua, 1506) foi ..."), else "O que é
X?". An example is listed only when vector retrieval ranks a passage of that very article first and
its relevance clears ``rag.answer.not_found_below``, so every listed question has its answer among the
sources a RAG arm reads.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config

# "Nome (Lugar, 13 de setembro de 1431 — Lugar, 13 de setembro de 1506) foi ..."
_PERSON_LEAD = re.compile(r"^[^(]{3,80}?\((?P<born>[^)]*?\b1?\d{3}\b)[^)]*?[—–-][^)]*?\b(?P<died>1?\d{3})\b[^)]*\)"
                          r"\s+(foi|é)\s")
_BIRTHPLACE = re.compile(r"^\s*(?P<place>[A-ZÀ-Ý][\w' -]{2,40}?),")


@dataclass(frozen=True)
class Example:
    question: str
    title: str
    url: str
    relevance: float


def _questions(title: str, lead: str) -> list[str]:
    person = _PERSON_LEAD.match(lead)
    if person is None:
        return [f"O que é {title}?"]
    found = []
    if _BIRTHPLACE.match(person.group("born")):
        found.append(f"Onde nasceu {title}?")
    found.append(f"Em que ano morreu {title}?")
    return found


def indexed_articles_dir(config: Config) -> Path:
    """The ingested articles behind the current index: the articles folder whose manifest has its dataset hash."""
    from ptwiki_llm.rag.pointer import pointer_path

    pointer = pointer_path(config)
    if not pointer.is_file():
        raise FileNotFoundError(f"no index recorded in {pointer}: run `ptwiki-llm index` first")
    dataset = json.loads(pointer.read_text(encoding="utf-8")).get("dataset_sha256")
    for manifest in sorted((config.data_dir / "articles").glob("*/manifest.json")):
        if json.loads(manifest.read_text(encoding="utf-8")).get("dataset_sha256") == dataset:
            return manifest.parent
    raise FileNotFoundError(f"the articles of the current index (dataset {str(dataset)[:12]}) are not under "
                            f"{config.data_dir / 'articles'}: run `ptwiki-llm index` again")


def _candidates(articles_dir: Path, seed: int) -> Iterator[tuple[dict[str, Any], str]]:
    """(article, question) pairs in a seeded order; people first (their questions have short answers)."""
    from ptwiki_llm.data.ingest import iter_articles, shard_paths

    rows = [r for r in iter_articles(shard_paths(articles_dir)) if r.get("title") and r.get("text")]
    random.Random(seed).shuffle(rows)
    pairs = [(row, q) for row in rows for q in _questions(row["title"], row["text"].lstrip()[:400])]
    pairs.sort(key=lambda pair: not pair[1].startswith(("Onde", "Em que")))
    yield from pairs


def example_questions(config: Config, count: int = 6, max_tries: int = 60, retriever: Any = None) -> list[Example]:
    """Up to ``count`` questions about indexed articles whose own article retrieval ranks first."""
    from ptwiki_llm.rag.evidence import source_relevance
    from ptwiki_llm.rag.pointer import current_collection
    from ptwiki_llm.rag.retrieval import open_retriever

    articles_dir = indexed_articles_dir(config)
    own = retriever is None
    retriever = retriever or open_retriever(config, current_collection(config))
    threshold = config.rag.answer.not_found_below
    found: list[Example] = []
    titles: set[str] = set()
    try:
        for tries, (row, question) in enumerate(_candidates(articles_dir, config.seed)):
            if len(found) >= count or tries >= max_tries:
                break
            if row["title"] in titles:
                continue
            hits = retriever.retrieve(question, k=1, mode="vector")
            if not hits or hits[0].chunk.article_id != row["id"]:
                continue
            (relevance,) = source_relevance(retriever.embedder, question, hits[:1],
                                            config.rag.chunking.heading_in_embedding)
            if threshold is not None and relevance < threshold:
                continue
            titles.add(row["title"])
            found.append(Example(question, row["title"], row.get("url") or hits[0].chunk.url, relevance))
    finally:
        if own:
            retriever.close()
    return found
