"""Answer metrics: SQuAD exact match and token F1 with a Portuguese normalisation, answer in sources.

The normalisation is SQuAD's: lower case, punctuation deleted (not replaced by a space: "d'água" ->
"dágua", "pós-graduação" -> "pósgraduação", as SQuAD's ``remove_punc`` does), the Portuguese articles
"o, a, os, as, um, uma" removed, whitespace collapsed. Accents are kept: "está" and "esta" are different
words. Citation markers such as "[2]", which the RAG prompt asks for, are removed before scoring.

Numbers are normalised first, deliberately for Portuguese: a dot or a space between digit groups of
three is a thousands separator ("1.000", "1 000" -> "1000"; "R$ 2.500,00" -> "2500,00"), and a decimal
comma stays ("3,5" stays "3,5", so it never becomes 35). An English-style decimal point ("3.5") is left
as written and its dot deleted with the punctuation: Portuguese text does not write it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

ARTICLES = frozenset({"o", "a", "os", "as", "um", "uma"})
_CITATION = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
_NUMBER = re.compile(r"\d{1,3}(?:[. ]\d{3})+(?!\d)(?:,\d+)?|\d+,\d+|\d+")
_THOUSANDS = re.compile(r"(?<=\d)[. ](?=\d{3}(?!\d))")
_KEEP = "\x00"  # stands for a decimal comma while punctuation is deleted


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith(("P", "S"))


def _number(match: re.Match[str]) -> str:
    return _THOUSANDS.sub("", match.group()).replace(",", _KEEP)


def normalize_answer(text: str) -> str:
    text = _CITATION.sub(" ", text).lower()
    text = _NUMBER.sub(_number, text)
    text = "".join(c for c in text if not _is_punctuation(c)).replace(_KEEP, ",")
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


def sentence_in_texts(sentence: str, texts: Iterable[str]) -> float:
    """1.0 when the normalised sentence occurs whole in one of the normalised texts (a sentence cut between two
    passages does not count)."""
    wanted = normalize_answer(sentence)
    return float(bool(wanted) and any(wanted in normalize_answer(t) for t in texts))
