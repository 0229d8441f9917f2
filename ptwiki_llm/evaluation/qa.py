"""Extractive QA items from SQuAD v1/v2 JSON files, and retrieval over each file's own contexts.

Parsing and gold passages reuse ``ptwiki_llm/rag/retrieval_eval.py``: each paragraph becomes a
one-section article, indexed with the configured chunker, embedder and store into a collection named
by the file's content hash (FaQuAD's contexts are not Wikipedia articles of the corpus, so the RAG arms
answer from this collection, not from the Wikipedia index). Unanswerable SQuAD 2.0 questions are skipped
and counted; answers whose ``answer_start`` does not point at their text are counted and kept (only the
answer text is used).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config
from ptwiki_llm.errors import InputError
from ptwiki_llm.provenance import sha256_file
from ptwiki_llm.rag.retrieval_eval import QaItem, first_gold_rank, gold_passages, load_squad, read_squad


class QaFileError(InputError, ValueError):
    pass


@dataclass
class QaTask:
    name: str
    path: Path
    sha256: str
    rows: list[dict[str, Any]]
    items: list[QaItem]
    counts: dict[str, int] = field(default_factory=dict)


def _offset_stats(path: Path) -> dict[str, int]:
    """Questions, unanswerable (SQuAD 2.0) questions and answers whose offset misses their text."""
    data = read_squad(path)
    stats = {"questions": 0, "unanswerable": 0, "answers": 0, "offset_mismatches": 0}
    for document in data.get("data", []):
        for paragraph in document.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                stats["questions"] += 1
                answers = qa.get("answers") or []
                if qa.get("is_impossible") or not any(a.get("text", "").strip() for a in answers):
                    stats["unanswerable"] += 1
                for answer in answers:
                    stats["answers"] += 1
                    start = answer.get("answer_start", -1)
                    text = answer.get("text", "")
                    if not (isinstance(start, int) and context[start : start + len(text)] == text):
                        stats["offset_mismatches"] += 1
    return stats


def load_qa_task(path: Path, max_questions: int | None, seed: int) -> QaTask:
    """The answerable questions of a SQuAD-format file, a seeded sample of ``max_questions`` in file order."""
    path = Path(path)
    try:
        rows, items = load_squad(path)
        stats = _offset_stats(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QaFileError(f"{path} is not a readable SQuAD v1/v2 JSON file: {type(exc).__name__}: {exc}") from exc
    # SQuAD 2.0 marks unanswerable questions with is_impossible and no answers; load_squad keeps them
    answerable = [item for item in items if item.answers]
    if max_questions is not None and len(answerable) > max_questions:
        keep = sorted(random.Random(f"{seed}:{path.name}").sample(range(len(answerable)), max_questions))
        answerable = [answerable[i] for i in keep]
    name = path.name.split(".")[0]
    counts = {**stats, "skipped_unanswerable": len(items) - sum(1 for i in items if i.answers),
              "answerable": sum(1 for i in items if i.answers), "evaluated": len(answerable), "paragraphs": len(rows)}
    return QaTask(name=name, path=path, sha256=sha256_file(path), rows=rows, items=answerable, counts=counts)


def resolve_qa_files(config: Config) -> list[Path]:
    from ptwiki_llm.assets import AssetNotFoundError, find_staged

    found = []
    for name in config.evaluation.qa.files:
        path = find_staged(name, config)
        if path is None or not path.is_file():
            raise AssetNotFoundError(
                f"QA file {name!r} not found (asset path: {config.asset_path or 'unset'}); set PTWIKI_ASSET_PATH to "
                "the folder holding staged data, or change evaluation.qa.files"
            )
        found.append(path)
    return found


@dataclass
class QaRetrieval:
    """Per question: the retrieved passages and the rank of the first gold passage (None = not retrieved)."""

    collection: str
    hits: dict[str, list[Any]]
    ranks: dict[str, int | None]
    fallbacks: int


def retrieve_for_task(config: Config, task: QaTask, embedder: Any, k: int, show_progress: bool) -> QaRetrieval:
    """Index the task's paragraphs (idempotent: chunk ids are deterministic) and retrieve for every question."""
    from ptwiki_llm.models import load_tokenizer, model_ref
    from ptwiki_llm.progress import progress_bar
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.index import build_index
    from ptwiki_llm.rag.retrieval import Retriever
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, collection_name, open_store

    rag = config.rag
    chunking = chunking_fingerprint(rag.chunking)
    chunker = Chunker(load_tokenizer(model_ref(config, rag.embedding.model), config), rag.chunking)
    name = collection_name("Qa", task.sha256, getattr(embedder, "collection_key", embedder.name), chunking)
    gold, fallbacks = gold_passages(task.rows, task.items, chunker)
    with open_store(config) as store:
        store.open(CollectionSpec(name=name, dimension=embedder.dimension, embedder=embedder.name,
                                  distance=rag.hnsw.distance, chunking=chunking,
                                  embedding=getattr(embedder, "fingerprint", None)))
        build_index(task.rows, chunker, embedder, store, rag, show_progress=False)
        retriever = Retriever(store, embedder, rag.retrieval)
        hits: dict[str, list[Any]] = {}
        ranks: dict[str, int | None] = {}
        with progress_bar(f"retrieving for {task.name}", len(task.items), show_progress) as advance:
            for item in task.items:
                found = retriever.retrieve(item.question, k=k)
                hits[item.qid] = found
                ranks[item.qid] = first_gold_rank(found, gold[item.qid])
                advance(1)
    return QaRetrieval(collection=name, hits=hits, ranks=ranks, fallbacks=fallbacks)
