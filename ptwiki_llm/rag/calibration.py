"""Calibrating "not found in the sources" on a SQuAD-format QA file (FaQuAD dev by default).

Every question is asked twice of an index of the file's paragraphs: once with its own document indexed
(the sources a RAG arm reads then hold the answer: "found"), and once with every passage of its own
document left out (the answer is not in the index: "absent"). The score of one asking is what the
answering code gates on: the best question-passage relevance (ptwiki_llm/rag/evidence.py) among the k
passages vector retrieval returns. The threshold is the ``keep`` quantile from below of the found scores: at least that
share of answerable questions is still answered; the report says how many absent ones it turns away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptwiki_llm.config import RagConfig
from ptwiki_llm.rag.chunking import text_fingerprint


@dataclass
class RelevanceSamples:
    found: list[float]  # best relevance among k retrieved, the question's document indexed and its passage retrieved
    absent: list[float]  # the same with the question's document left out of the index
    questions: int
    passages: int
    documents: int


def relevance_samples(path: Path, chunker: Any, embedder: Any, rag: RagConfig, k: int) -> RelevanceSamples:
    """Score every question of ``path`` found and absent.

    Exact vector search over the file's passages in memory: the passages are embedded once, as the index
    embeds them, so a passage's cosine to the question is both its retrieval score and its relevance
    (``source_relevance``), without embedding each retrieved passage again per question.
    """
    from ptwiki_llm.rag.retrieval_eval import gold_passages, load_squad

    rows, items = load_squad(path)
    gold, _ = gold_passages(rows, items, chunker)
    chunks = [chunk for row in rows for chunk in chunker.chunk_article(row)]
    vectors = embedder.embed_passages([c.embedding_text(rag.chunking.heading_in_embedding) for c in chunks])
    queries = embedder.embed_queries([item.question for item in items])
    document = {row["id"]: row["title"] for row in rows}
    own = np.array([[document[c.article_id] for c in chunks]])
    fingerprints = [text_fingerprint(c.text) for c in chunks]
    found, absent = [], []
    for item, query in zip(items, queries, strict=True):
        scores = vectors @ query
        top = np.argsort(-scores, kind="stable")[:k]
        if any(fingerprints[i] in gold[item.qid] for i in top):
            found.append(float(scores[top].max()))
        others = scores[own[0] != document[item.paragraph]]
        if len(others):
            absent.append(float(np.sort(others)[-k:].max()))
    return RelevanceSamples(found, absent, len(items), len(chunks), len(set(document.values())))


def threshold_for(found: Sequence[float], keep: float) -> float:
    """The largest threshold that keeps at least ``keep`` of the found scores at or above it."""
    if not found:
        raise ValueError("no answerable question retrieved its passage: nothing to calibrate on")
    ordered = np.sort(np.asarray(found))
    index = int(np.floor((1 - keep) * len(ordered)))
    return float(ordered[min(index, len(ordered) - 1)])


def rates(samples: RelevanceSamples, threshold: float) -> dict[str, float]:
    """Share of found questions still answered and of absent ones turned away at ``threshold``."""
    found, absent = np.asarray(samples.found), np.asarray(samples.absent)
    return {"found_kept": float((found >= threshold).mean()) if len(found) else float("nan"),
            "absent_turned_away": float((absent < threshold).mean()) if len(absent) else float("nan")}
