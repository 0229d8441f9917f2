"""Calibrating "not found in the sources" on a SQuAD-format QA file (FaQuAD dev by default).

Every question is asked twice of an index of the file's paragraphs: once with its own document indexed
(the sources a RAG arm reads then hold the answer: "found"), and once with every passage of its own
document left out (the answer is not in the index: "absent"). The score of one asking is what the
answering code gates on: the best question-passage relevance (ptwiki_llm/rag/evidence.py) among the k
passages retrieved. The threshold is the ``keep`` quantile from below of the found scores: at least that
share of answerable questions is still answered; the report says how many absent ones it turns away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptwiki_llm.config import RagConfig
from ptwiki_llm.rag.evidence import source_relevance


@dataclass
class RelevanceSamples:
    found: list[float]  # best relevance among k retrieved, the question's document indexed and its passage retrieved
    absent: list[float]  # the same with the question's document left out of the index
    questions: int
    passages: int
    documents: int


def relevance_samples(path: Path, store: Any, chunker: Any, embedder: Any, rag: RagConfig,
                      k: int) -> RelevanceSamples:
    """Index ``path``'s paragraphs into the open ``store`` and score every question found and absent."""
    from ptwiki_llm.rag.index import build_index
    from ptwiki_llm.rag.retrieval import Retriever
    from ptwiki_llm.rag.retrieval_eval import first_gold_rank, gold_passages, load_squad

    rows, items = load_squad(path)
    gold, _ = gold_passages(rows, items, chunker)
    report = build_index(rows, chunker, embedder, store, rag, show_progress=False)
    document = {row["id"]: row["title"] for row in rows}
    retriever = Retriever(store, embedder, rag.retrieval)
    heading = rag.chunking.heading_in_embedding
    found, absent = [], []
    for item in items:
        ranked = retriever.retrieve(item.question, k=report.store_count, mode="vector")
        top = ranked[:k]
        rank = first_gold_rank(top, gold[item.qid])
        if rank is not None:
            found.append(max(source_relevance(embedder, item.question, top, heading)))
        others = [h for h in ranked if document.get(h.chunk.article_id) != document[item.paragraph]][:k]
        if others:
            absent.append(max(source_relevance(embedder, item.question, others, heading)))
    return RelevanceSamples(found, absent, len(items), report.store_count, len(set(document.values())))


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
