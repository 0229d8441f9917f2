"""Answer metrics: SQuAD exact match and token F1 with a Portuguese normalisation, answer in sources.

The normalisation is SQuAD's (lower case, punctuation and articles removed, whitespace collapsed) with
the Portuguese articles "o, a, os, as, um, uma". Accents are kept: "está" and "esta" are different
words. Citation markers such as "[2]", which the RAG prompt asks for, are removed before scoring.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

ARTICLES = frozenset({"o", "a", "os", "as", "um", "uma"})
_CITATION = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith(("P", "S"))


def normalize_answer(text: str) -> str:
    text = _CITATION.sub(" ", text).lower()
    text = "".join(" " if _is_punctuation(c) else c for c in text)
    return " ".join(word for word in text.split() if word not in ARTICLES)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in golds))


def _f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:
        # SQuAD: an empty side scores 1 only when both are empty (a gold of articles alone, say)
        return float(prediction_tokens == gold_tokens)
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-overlap F1 against any gold answer."""
    predicted = normalize_answer(prediction).split()
    return max((_f1(predicted, normalize_answer(gold).split()) for gold in golds), default=0.0)


def answer_in_texts(golds: Sequence[str], texts: Iterable[str]) -> float:
    """1.0 when a normalised gold answer occurs, as whole words, in one of the normalised texts."""
    wanted = [f" {normalize_answer(g)} " for g in golds if normalize_answer(g)]
    return float(any(g in f" {normalize_answer(t)} " for t in texts for g in wanted))
