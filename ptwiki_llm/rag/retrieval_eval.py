"""Retrieval quality on a SQuAD-format QA file: index its paragraphs, ask its questions.

Each paragraph becomes a one-section article and goes through the real chunker, embedder and store.
A question's gold passages are the chunks of its paragraph that contain one of its answers (all the
paragraph's chunks when the answer spans a cut). Reported: recall@k (a gold passage among the top k)
and MRR@max(k) (mean reciprocal rank of the first gold passage, 0 when it is not in the top max(k)).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptwiki_llm.config import RagConfig
from ptwiki_llm.rag.chunking import Chunker, text_fingerprint
from ptwiki_llm.rag.embeddings import Embedder
from ptwiki_llm.rag.index import build_index
from ptwiki_llm.rag.retrieval import Retriever
from ptwiki_llm.rag.stores import Hit, VectorStore


@dataclass(frozen=True)
class QaItem:
    qid: str
    question: str
    answers: tuple[str, ...]
    paragraph: int


def read_squad(path: Path) -> dict[str, Any]:
    """A SQuAD-format JSON file (optionally .gz), parsed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def load_squad(path: Path) -> tuple[list[dict[str, Any]], list[QaItem]]:
    """Article rows (one per paragraph) and the questions, from a SQuAD v1 JSON (optionally .gz)."""
    data = read_squad(path)["data"]
    rows: list[dict[str, Any]] = []
    items: list[QaItem] = []
    for document in data:
        for paragraph in document["paragraphs"]:
            pid = len(rows)
            context = paragraph["context"]
            rows.append({"id": pid, "revision": 0, "title": document.get("title", ""),
                         "url": f"squad:{Path(path).name}#{pid}", "text": context,
                         "sections": [{"heading": "", "level": 1, "text": context}]})
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(a["text"].strip() for a in qa.get("answers", []) if a["text"].strip()))
                if qa["question"].strip():
                    items.append(QaItem(str(qa["id"]), qa["question"].strip(), answers, pid))
    return rows, items


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def gold_passages(rows: Sequence[dict[str, Any]], items: Sequence[QaItem],
                  chunker: Chunker) -> tuple[dict[str, set[bytes]], int]:
    """qid -> fingerprints of the passages holding its answer (fingerprints, so a passage deduplicated
    into an identical one elsewhere still counts), and how many questions fell back to the whole paragraph."""
    chunks = {row["id"]: chunker.chunk_article(row) for row in rows}
    gold: dict[str, set[bytes]] = {}
    fallbacks = 0
    for item in items:
        candidates = chunks[item.paragraph]
        holding = [c for c in candidates if any(_norm(a) in _norm(c.text) for a in item.answers)]
        fallbacks += not holding
        gold[item.qid] = {text_fingerprint(c.text) for c in (holding or candidates)}
    return gold, fallbacks


def first_gold_rank(hits: Sequence[Hit], gold: set[bytes]) -> int | None:
    for rank, hit in enumerate(hits, 1):
        if text_fingerprint(hit.chunk.text) in gold:
            return rank
    return None


def summarize(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[str, float]:
    n = len(ranks) or 1
    depth = max(ks)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out[f"mrr@{depth}"] = sum(1.0 / r for r in ranks if r is not None and r <= depth) / n
    return out


def evaluate_retrieval(
    squad_path: Path,
    store: VectorStore,
    chunker: Chunker,
    embedder: Embedder,
    cfg: RagConfig,
    modes: Sequence[tuple[str, float | None]] = (("vector", None), ("hybrid", 0.5)),
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Index ``squad_path``'s paragraphs into the (open, empty or same-content) collection of ``store``,
    then score each retrieval mode. Returns counts, timings and the metrics per mode."""
    rows, items = load_squad(squad_path)
    gold, fallbacks = gold_passages(rows, items, chunker)
    report = build_index(rows, chunker, embedder, store, cfg, show_progress=False)
    retriever = Retriever(store, embedder, cfg.retrieval)
    results: dict[str, Any] = {}
    depth = max(ks)
    for mode, alpha in modes:
        started = time.perf_counter()
        ranks = [first_gold_rank(retriever.retrieve(item.question, k=depth, mode=mode, alpha=alpha), gold[item.qid])
                 for item in items]
        name = mode if alpha is None else f"{mode}(alpha={alpha})"
        results[name] = {**summarize(ranks, ks), "questions": len(items),
                         "seconds_per_question": (time.perf_counter() - started) / max(len(items), 1)}
    return {
        "dataset": Path(squad_path).name,
        "paragraphs": len(rows),
        "questions": len(items),
        "questions_with_gold_paragraph_fallback": fallbacks,
        "chunks_indexed": report.store_count,
        "metrics": results,
    }
