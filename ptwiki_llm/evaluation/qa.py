"""Knowledge-injection QA: the human questions about the documents of ``data.knowledge``, per half.

The format step chose the documents and split them into a half that went into the fine-tuning texts
(``seen``) and a half that did not (``heldout``) (``ptwiki_llm/data/knowledge.py``); the questions of both
halves are asked of every arm. Both halves' paragraphs are indexed (with the configured chunker, embedder
and store, in a collection named by the selection's hash) and RAG arms answer from that index: fine-tuning
and RAG see the same documents. Unanswerable SQuAD 2.0 questions are counted and left out; answers whose
``answer_start`` does not point at their text are counted and kept (only the answer text is used).

Each question is scored twice: multiple choice by likelihood (the gold answer against answers of the same
type taken from other questions of the file: years, numbers, names, other text of about as many words) and
a generated answer scored with exact match and F1.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm.config import Config
from ptwiki_llm.data.knowledge import HELDOUT, SEEN, KnowledgeFileError, halves_of, read_manifest
from ptwiki_llm.evaluation.metrics import normalize_answer
from ptwiki_llm.rag.retrieval_eval import QaItem, first_gold_rank, gold_passages, load_squad, read_squad

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData


class QaFileError(KnowledgeFileError):
    pass


@dataclass
class QaTask:
    name: str
    path: Path
    selection_sha256: str
    rows: list[dict[str, Any]]  # the selected documents' paragraphs: what the RAG index holds
    items: list[QaItem]
    halves: dict[str, str]  # qid -> seen | heldout
    choices: dict[str, tuple[str, ...]]  # qid -> gold first, then the distractors
    counts: dict[str, Any] = field(default_factory=dict)


def answer_type(answer: str) -> str:
    text = answer.strip()
    if re.fullmatch(r"(1[0-9]|20)\d\d", text):
        return "year"
    if any(c.isdigit() for c in text):
        return "number"
    if text[:1].isupper():
        return "name"
    return "text"


def _distractors(gold: str, answers: tuple[str, ...], pool: dict[str, list[str]], count: int,
                 rng: random.Random) -> tuple[str, ...] | None:
    """``count`` answers of other questions, of the gold's type and about as many words, none equal to a gold."""
    taken = {normalize_answer(a) for a in answers}
    words = len(gold.split())
    same_type = [a for a in pool[answer_type(gold)] if normalize_answer(a) not in taken]
    for slack in (0, 1, 2, 4, 1000):
        options = sorted({a for a in same_type if abs(len(a.split()) - words) <= slack})
        options = list(dict.fromkeys(options))
        if len(options) >= count:
            picked: list[str] = []
            seen_norm = set()
            for option in rng.sample(options, len(options)):
                if normalize_answer(option) not in seen_norm:
                    picked.append(option)
                    seen_norm.add(normalize_answer(option))
                if len(picked) == count:
                    return tuple(picked)
    return None


def _offset_stats(data: dict[str, Any], documents: set[int]) -> dict[str, int]:
    """Questions, unanswerable questions and answers whose offset misses their text, in the selected documents."""
    stats = {"questions": 0, "unanswerable": 0, "answers": 0, "offset_mismatches": 0}
    for index, document in enumerate(data.get("data", [])):
        if index not in documents:
            continue
        for paragraph in document.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                stats["questions"] += 1
                answers = qa.get("answers") or []
                if qa.get("is_impossible") or not any((a.get("text") or "").strip() for a in answers):
                    stats["unanswerable"] += 1
                for answer in answers:
                    stats["answers"] += 1
                    start = answer.get("answer_start", -1)
                    text = answer.get("text", "")
                    if not (isinstance(start, int) and context[start : start + len(text)] == text):
                        stats["offset_mismatches"] += 1
    return stats


def load_knowledge_task(config: Config, formatted: FormattedData) -> QaTask:
    """The questions of the format step's knowledge documents, a seeded sample per half, with their choices."""
    manifest = read_manifest(formatted)
    if manifest is None:
        raise QaFileError("the 'qa' task asks questions about the knowledge-injection documents, but the format step "
                          "wrote none: set data.knowledge.file to a SQuAD v1/v2 file (default "
                          "data/faquad_train.json.gz), or leave 'qa' out of evaluation.tasks")
    path = Path(manifest["file"])
    ev = config.evaluation
    seed = config.seed if ev.probes.seed is None else ev.probes.seed
    try:
        data = read_squad(path)
        all_rows, all_items = load_squad(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QaFileError(f"{path} is not a readable SQuAD v1/v2 JSON file: {type(exc).__name__}: {exc}") from exc
    paragraph_document: list[int] = [index for index, document in enumerate(data["data"])
                                     for _ in document.get("paragraphs", [])]
    halves = halves_of(manifest)
    selected = [row for row in all_rows if paragraph_document[row["id"]] in halves]
    items = [item for item in all_items if paragraph_document[item.paragraph] in halves]
    answerable = [item for item in items if item.answers]
    if not answerable:
        raise QaFileError(f"{path}: the selected documents hold no answerable question; set data.knowledge.file to a "
                          "SQuAD file with answers")
    pool: dict[str, list[str]] = {}
    for item in all_items:  # distractors come from every question of the file
        if item.answers:
            pool.setdefault(answer_type(item.answers[0]), []).append(item.answers[0])
    rng = random.Random(f"{seed}:qa")
    chosen: list[QaItem] = []
    choices: dict[str, tuple[str, ...]] = {}
    item_half: dict[str, str] = {}
    counts: dict[str, Any] = {"no_distractors": 0}
    for half in (SEEN, HELDOUT):
        members = [item for item in answerable if halves[paragraph_document[item.paragraph]] == half]
        if ev.qa.max_questions is not None and len(members) > ev.qa.max_questions:
            members = [members[i] for i in sorted(rng.sample(range(len(members)), ev.qa.max_questions))]
        for item in members:
            distractors = _distractors(item.answers[0], item.answers, pool, ev.qa.distractors, rng)
            if distractors is None:
                counts["no_distractors"] += 1
                continue
            chosen.append(item)
            choices[item.qid] = (item.answers[0], *distractors)
            item_half[item.qid] = half
        counts[f"evaluated_{half}"] = sum(1 for q in item_half.values() if q == half)
    counts.update(_offset_stats(data, set(halves)))
    counts.update({"answerable": len(answerable), "skipped_unanswerable": len(items) - len(answerable),
                   "evaluated": len(chosen), "paragraphs": len(selected), "documents": manifest["counts"]})
    for half in (SEEN, HELDOUT):
        if not counts[f"evaluated_{half}"]:
            raise QaFileError(f"{path}: no question of the {half} documents could be asked (answerable ones without "
                              "enough same-type distractors are counted in no_distractors); raise "
                              "data.knowledge.max_documents or lower evaluation.qa.distractors")
    name = path.name.split(".")[0]
    # paragraphs renumbered 0..n-1 for the index; QaItem.paragraph points into ``rows``
    renumber = {row["id"]: position for position, row in enumerate(selected)}
    rows = [{**row, "id": renumber[row["id"]]} for row in selected]
    chosen = [QaItem(i.qid, i.question, i.answers, renumber[i.paragraph]) for i in chosen]
    return QaTask(name=name, path=path, selection_sha256=manifest["selection_sha256"], rows=rows, items=chosen,
                  halves=item_half, choices=choices, counts=counts)


@dataclass
class QaRetrieval:
    """Per question: the retrieved passages and the rank of the first gold passage (None = not retrieved)."""

    collection: str
    hits: dict[str, list[Any]]
    ranks: dict[str, int | None]
    fallbacks: int
    modes: dict[str, dict[str, float]] = field(default_factory=dict)  # recall@k of each retrieval mode


def retrieve_for_task(config: Config, task: QaTask, embedder: Any, k: int, recall_k: list[int],
                      show_progress: bool) -> QaRetrieval:
    """Index the task's paragraphs (idempotent: chunk ids are deterministic), retrieve for every question with
    the configured mode (``rag.retrieval``), and measure recall@k of vector, BM25 (hybrid with alpha 0) and
    hybrid retrieval on the same questions."""
    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.progress import progress_bar
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.index import build_index
    from ptwiki_llm.rag.retrieval_eval import summarize
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, collection_name, open_store

    rag = config.rag
    chunking = chunking_fingerprint(rag.chunking)
    chunker = Chunker(load_tokenizer(model_ref(config, rag.embedding.model), config), rag.chunking)
    name = collection_name("Qa", task.selection_sha256, getattr(embedder, "collection_key", embedder.name), chunking)
    gold, fallbacks = gold_passages(task.rows, task.items, chunker)
    depth = max([k, *recall_k])
    with open_store(config) as store:
        store.open(CollectionSpec(name=name, dimension=embedder.dimension, embedder=embedder.name,
                                  distance=rag.hnsw.distance, chunking=chunking,
                                  embedding=getattr(embedder, "fingerprint", None)))
        build_index(task.rows, chunker, embedder, store, rag, show_progress=False)
        hybrid_label = f"hybrid(alpha={rag.retrieval.alpha})"
        configured = "vector" if rag.retrieval.mode == "vector" else hybrid_label
        mode_ranks: dict[str, list[int | None]] = {"vector": [], "bm25": [], hybrid_label: []}
        hits: dict[str, list[Any]] = {}
        ranks: dict[str, int | None] = {}
        with progress_bar(f"retrieving for {task.name}", len(task.items), show_progress) as advance:
            for item in task.items:
                # one query embedding serves the three modes (what Retriever.retrieve does for one of them)
                vector = embedder.embed_query(item.question)
                found = {"vector": store.search(vector, depth),
                         "bm25": store.hybrid(item.question, vector, depth, 0.0),
                         hybrid_label: store.hybrid(item.question, vector, depth, rag.retrieval.alpha)}
                for label, mode_hits in found.items():
                    mode_ranks[label].append(first_gold_rank(mode_hits, gold[item.qid]))
                hits[item.qid] = found[configured]
                ranks[item.qid] = first_gold_rank(found[configured], gold[item.qid])
                advance(1)
        modes = {label: summarize(values, sorted({*recall_k, depth})) for label, values in mode_ranks.items()}
    return QaRetrieval(collection=name, hits=hits, ranks=ranks, fallbacks=fallbacks, modes=modes)
