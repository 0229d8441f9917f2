"""Knowledge injection: the documents of a SQuAD-format QA file, split into seen-by-fine-tuning and held-out halves.

The unit is the document (a ``data`` entry of the file, a title with its paragraphs), so no paragraph of a
held-out document is ever trained on. A seeded sample of documents that hold at least one answerable
question is split into two halves; the seen half's paragraphs go into the fine-tuning texts (written by the
format step, appended by the train step to its sample), both halves go into the RAG index the evaluation
builds, and the questions of both are asked of every arm, reported per half.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm.config import KnowledgeConfig
from ptwiki_llm.errors import InputError
from ptwiki_llm.provenance import sha256_file, sha256_json

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData

SEEN, HELDOUT = "seen", "heldout"
MANIFEST = "knowledge.json"
TRAIN_TEXTS = "knowledge_train.jsonl"


class KnowledgeFileError(InputError, ValueError):
    """The knowledge-injection QA file cannot be used as configured (a user error: one line, no traceback)."""


@dataclass(frozen=True)
class KnowledgeDocument:
    index: int  # position in the file's ``data`` list (titles can repeat)
    title: str
    paragraphs: tuple[str, ...]
    half: str
    answerable: int
    unanswerable: int


def _read(path: Path) -> dict[str, Any]:
    from ptwiki_llm.rag.retrieval_eval import read_squad

    try:
        data = read_squad(path)
        documents = data["data"]
        if not isinstance(documents, list):
            raise TypeError("'data' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KnowledgeFileError(f"{path} is not a readable SQuAD v1/v2 JSON file ({type(exc).__name__}: {exc}); "
                                 "set data.knowledge.file to one") from exc
    return data


def _answerable(qa: dict[str, Any]) -> bool:
    return not qa.get("is_impossible") and any((a.get("text") or "").strip() for a in qa.get("answers") or [])


def select_documents(path: Path, cfg: KnowledgeConfig, seed: int) -> list[KnowledgeDocument]:
    """A seeded sample of the documents with answerable questions, each marked seen or held out."""
    data = _read(path)
    usable: list[tuple[int, dict[str, Any], int, int]] = []
    for index, document in enumerate(data["data"]):
        qas = [qa for p in document.get("paragraphs", []) for qa in p.get("qas", [])]
        answerable = sum(_answerable(qa) for qa in qas)
        if answerable:
            usable.append((index, document, answerable, len(qas) - answerable))
    if len(usable) < 2:
        raise KnowledgeFileError(
            f"{path} has {len(usable)} document(s) with answerable questions; knowledge injection needs at least 2 "
            "(one seen, one held out): set data.knowledge.file to a SQuAD file with answers, or data.knowledge.file: "
            "null and leave 'qa' out of evaluation.tasks")
    rng = random.Random(f"{seed}:knowledge")
    order = list(range(len(usable)))
    rng.shuffle(order)
    if cfg.max_documents is not None:
        order = order[: cfg.max_documents]
    seen_count = min(len(order) - 1, max(1, round(len(order) * cfg.seen_share)))
    seen = set(order[:seen_count])
    documents = []
    for position in sorted(order):
        index, document, answerable, unanswerable = usable[position]
        paragraphs = tuple(p.get("context", "") for p in document.get("paragraphs", []) if p.get("context", "").strip())
        documents.append(KnowledgeDocument(index, str(document.get("title", "")), paragraphs,
                                           SEEN if position in seen else HELDOUT, answerable, unanswerable))
    return documents


def training_text(document: KnowledgeDocument, paragraph: str) -> str:
    """What the fine-tuning corpus holds for one paragraph: the document's title and the paragraph, untemplated."""
    return f"{document.title.replace('_', ' ')}\n\n{paragraph}"


def write_knowledge(path: Path, cfg: KnowledgeConfig, seed: int, out_dir: Path,
                    paraphrase: Any = None) -> dict[str, Any]:
    """``knowledge.json`` (file, halves, counts) and ``knowledge_train.jsonl`` (seen paragraphs x repeats, plus
    ``paraphrase(texts) -> list[list[str]]`` rewrites when given) into ``out_dir``; returns the manifest."""
    documents = select_documents(path, cfg, seed)
    originals = [training_text(d, p) for d in documents if d.half == SEEN for p in d.paragraphs]
    texts = [text for text in originals for _ in range(cfg.repeats)]
    paraphrased = 0
    if paraphrase is not None and cfg.paraphrases:
        rewrites = paraphrase(originals)
        paraphrased = sum(len(r) for r in rewrites)
        texts += [text for group in rewrites for text in group]
    with (out_dir / TRAIN_TEXTS).open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    manifest = {
        "file": str(path), "file_sha256": sha256_file(path), "seed": seed, "config": cfg.model_dump(),
        "documents": [asdict(d) | {"paragraphs": len(d.paragraphs)} for d in documents],
        "counts": {half: {"documents": sum(d.half == half for d in documents),
                          "paragraphs": sum(len(d.paragraphs) for d in documents if d.half == half),
                          "answerable": sum(d.answerable for d in documents if d.half == half),
                          "unanswerable": sum(d.unanswerable for d in documents if d.half == half)}
                   for half in (SEEN, HELDOUT)},
        "training_texts": len(texts), "training_paraphrases": paraphrased,
        "training_chars": sum(len(t) for t in texts),
    }
    manifest["selection_sha256"] = sha256_json([manifest["file_sha256"], manifest["documents"]])
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def read_manifest(formatted: FormattedData) -> dict[str, Any] | None:
    """The format step's knowledge manifest, or None when knowledge injection was off."""
    path = formatted.knowledge
    if not path or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def halves_of(manifest: dict[str, Any]) -> dict[int, str]:
    """Document index in the file -> its half."""
    return {d["index"]: d["half"] for d in manifest["documents"]}
