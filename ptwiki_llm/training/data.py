"""The formatted train/eval JSONL as seeded samples, with the checks that must fail before a model loads."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING

from ptwiki_llm.errors import InputError

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData


class TrainingDataError(InputError, ValueError):
    """The formatted data cannot be trained on as configured."""


def read_texts(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise TrainingDataError(f"formatted split {path} does not exist; run the format step first (ptwiki-llm data)")
    texts = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise TrainingDataError(f"{path}:{number}: expected a JSON object with a 'text' string")
            if text.strip():
                texts.append(text)
    return texts


def seeded_sample(texts: list[str], limit: int | None, seed: int) -> list[str]:
    """``limit`` texts picked with ``seed``, in file order (the Trainer shuffles training batches itself)."""
    if limit is None or limit >= len(texts):
        return list(texts)
    picked = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in picked]


def load_splits(formatted: FormattedData, max_train: int | None, max_eval: int | None,
                seed: int) -> tuple[list[str], list[str]]:
    """The seeded train and eval samples; the knowledge-injection documents (format step) join every train sample,
    whatever its size, so the documents called "seen" are in the fine-tuning texts."""
    train = read_texts(Path(formatted.train))
    if not train:
        raise TrainingDataError(
            f"the training split {formatted.train} holds no examples; check the format step's summary "
            "(were all articles quarantined or too short?) or point data.source at a larger corpus"
        )
    evaluation = read_texts(Path(formatted.eval)) if formatted.eval else []
    knowledge = read_texts(Path(formatted.knowledge_train)) if formatted.knowledge_train else []
    return seeded_sample(train, max_train, seed) + knowledge, seeded_sample(evaluation, max_eval, seed + 1)


def raw_heldout_texts(formatted: FormattedData, limit: int | None, max_chars: int | None, seed: int) -> list[str]:
    """A seeded sample of the eval split's articles as cleaned text (no template), each cut at a sentence end."""
    from ptwiki_llm.data.format import truncate_at_sentence

    path = formatted.eval_raw
    if not path or not Path(path).is_file():
        raise TrainingDataError(
            f"the format step's output {formatted.dir} has no eval_raw.jsonl (raw held-out article text); "
            "re-run the format step (ptwiki-llm data) with this version"
        )
    texts = seeded_sample(read_texts(Path(path)), limit, seed)
    return [truncate_at_sentence(text, max_chars) if max_chars else text for text in texts]


def check_sequence_length(max_seq_length: int, model_context: int | None, model_name: str) -> None:
    if model_context is not None and max_seq_length > model_context:
        raise TrainingDataError(
            f"train.max_seq_length={max_seq_length} exceeds the context of {model_name} ({model_context} tokens); "
            f"set train.max_seq_length to at most {model_context}"
        )
