"""Knowledge probes: cloze items built from the lead sentences of the corpus's articles.

A probe masks one span of a lead sentence: a year, another number, or a named entity (a run of
capitalised words that does not open the sentence). Its distractors are spans of the same type taken
from other articles' lead sentences (years close to the gold one, numbers with as many digits, entities
with as many words), so the choice tests knowledge rather than form. Each probe keeps its article id
and its group: ``heldout`` when the format step put the article in the eval split (the split function
of ``ptwiki_llm/data/format.py``), ``train`` when the masked sentence is in the fine-tuning sample.
Articles of the train split whose sentence the fine-tuning sample left out are not probed: they were
neither trained on nor held out. Everything is a function of the articles and the seed.

Each probe also carries a question, what a user would type: the span's interrogative ("Em que ano",
"Qual número", "Qual nome"), the article's title as the subject and at most ``_QUESTION_WORDS`` words on
each side of the span, never more than half of the sentence's words. RAG arms retrieve with this question,
never with the sentence, and every arm answers it as multiple choice; the question never contains the
source sentence, the masked sentence or the answer (``question_for`` refuses, and such a span is not used).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ptwiki_llm.config import ProbesConfig
from ptwiki_llm.data.format import is_eval
from ptwiki_llm.evaluation.metrics import normalize_answer

MASK = "____"
_UP = "A-ZÁÀÂÃÉÊÍÓÔÕÚÜÇÑ"
_LOW = "a-záàâãéêíóôõúüçñ"
_WORD = rf"[{_UP}][{_LOW}]+(?:-[{_UP}{_LOW}][{_LOW}]+)*"  # Saône-et-Loire, Estados-membros
_ENTITY = re.compile(rf"(?<![\w'’-]){_WORD}(?:\s+(?:(?:de|da|do|dos|das|e|del|von|van)\s+)?{_WORD})*"
                     rf"(?:\s+[IVXLC]+\b)?(?![\w'’-])")  # Complexo III, Pio XII
# Digit groups joined by a space ("15 725") or a colon ("12:15") are left out: masking one half is ambiguous.
_NUMBER = re.compile(r"(?<![\w.,/:-])(?<!\d\s)\d+(?:[.,]\d+)*(?![\w/:-])(?!\s\d)")
_SENTENCE_BREAK = re.compile(rf"(?<=[.!?…])\s+(?=[\"«“({_UP}])")
_MIN_PREFIX_CHARS = 10  # a span right at the start has no context to be predicted from
_QUESTION_LEAD = {"year": "Em que ano", "number": "Qual número", "entity": "Qual nome"}
_QUESTION_WORDS = 4
_EDGE_PUNCTUATION = ",;:()«»\"“”'."


@dataclass(frozen=True)
class Probe:
    probe_id: str
    article_id: int
    title: str
    sentence: str
    start: int
    end: int
    kind: str
    gold: str
    distractors: tuple[str, ...]
    group: str
    question: str

    @property
    def prefix(self) -> str:
        return self.sentence[: self.start]

    @property
    def suffix(self) -> str:
        return self.sentence[self.end :]

    @property
    def masked(self) -> str:
        return f"{self.prefix}{MASK}{self.suffix}"

    @property
    def candidates(self) -> tuple[str, ...]:
        """Gold first, then the distractors."""
        return (self.gold, *self.distractors)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "distractors": list(self.distractors), "masked": self.masked}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Probe:
        fields = {k: row[k] for k in cls.__dataclass_fields__}
        return cls(**{**fields, "distractors": tuple(row["distractors"])})


def question_for(title: str, sentence: str, start: int, end: int, kind: str) -> str | None:
    """A question about the span: interrogative, title, the words around the span (None when the words around it
    are too few, or the question would hold the answer, the source sentence or the masked sentence)."""
    before = [w for w in (w.strip(_EDGE_PUNCTUATION) for w in sentence[:start].split()) if w]
    after = [w for w in (w.strip(_EDGE_PUNCTUATION) for w in sentence[end:].split()) if w]
    budget = max(1, (len(before) + len(after) + 1) // 2)  # at most half the sentence's words
    near_before = before[-_QUESTION_WORDS:]
    near_after = after[:_QUESTION_WORDS]
    while len(near_before) + len(near_after) > budget:
        (near_before if len(near_before) > len(near_after) else near_after).pop(
            0 if len(near_before) > len(near_after) else -1)
    if not near_before and not near_after:
        return None
    question = f"{_QUESTION_LEAD[kind]} — {title}: {' '.join(near_before)} … {' '.join(near_after)}?".replace(
        "  ", " ").replace(" ?", "?")
    if not question_is_safe(question, sentence, sentence[start:end], f"{sentence[:start]}{MASK}{sentence[end:]}"):
        return None
    return question


def question_is_safe(question: str, sentence: str, gold: str, masked: str) -> bool:
    """The question holds neither the answer (as whole words) nor the source sentence nor the masked sentence."""
    asked = f" {normalize_answer(question)} "
    return (f" {normalize_answer(gold)} " not in asked and normalize_answer(sentence) not in asked
            and normalize_answer(masked.replace(MASK, " ")) not in asked)


def split_sentences(text: str) -> list[str]:
    """Sentences of each line; a break needs end punctuation, space, then a capital, quote or bracket."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_BREAK.split(line) if s.strip()]


def sentence_key(sentence: str) -> str:
    return " ".join(sentence.split())


def spans(sentence: str, kinds: Iterable[str]) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every maskable span, in sentence order."""
    wanted = set(kinds)
    found: list[tuple[int, int, str]] = []
    for match in _NUMBER.finditer(sentence):
        text = match.group()
        kind = "year" if len(text) == 4 and text.isdigit() and 1000 <= int(text) <= 2099 else "number"
        if kind in wanted and match.start() >= _MIN_PREFIX_CHARS:
            found.append((match.start(), match.end(), kind))
    if "entity" in wanted:
        for match in _ENTITY.finditer(sentence):
            if match.start() >= _MIN_PREFIX_CHARS:
                found.append((match.start(), match.end(), "entity"))
    return sorted(found)


def lead_section(row: Mapping[str, Any]) -> str:
    for section in row.get("sections") or []:
        if not (section.get("heading") or "").strip():
            return section.get("text") or ""
        break  # the lead is the first section, or there is none
    return ""


def _usable(sentence: str, cfg: ProbesConfig) -> bool:
    return cfg.min_sentence_chars <= len(sentence) <= cfg.max_sentence_chars and sentence[-1] in ".!?…"


def fine_tuning_sentences(texts: Iterable[str]) -> set[str]:
    """Whitespace-normalised sentences of the texts the adapter was trained on."""
    return {sentence_key(s) for text in texts for s in split_sentences(text)}


@dataclass
class _Candidate:
    article_id: int
    title: str
    sentence: str
    start: int
    end: int
    kind: str

    @property
    def gold(self) -> str:
        return self.sentence[self.start : self.end]


def _similar(kind: str, gold: str, pool: list[str]) -> list[str]:
    """The part of a type's pool that looks like the gold span."""
    if kind == "year":
        return sorted(pool, key=lambda y: (abs(int(y) - int(gold)), y))[:24]
    if kind == "number":
        digits = sum(c.isdigit() for c in gold)
        return [n for n in pool if sum(c.isdigit() for c in n) == digits]
    words = len(gold.split())
    return [e for e in pool if len(e.split()) == words]


def build_probes(articles: Iterable[Mapping[str, Any]], cfg: ProbesConfig, seed: int, eval_fraction: float,
                 trained_sentences: set[str] | None) -> tuple[list[Probe], dict[str, int]]:
    """Up to ``cfg.count`` probes, one per article, ``cfg.heldout_share`` of them held out; and counts.

    ``trained_sentences``: the fine-tuning sample's sentences (None = every train-split article counts
    as trained on, e.g. when no adapter is evaluated).
    """
    per_article: dict[int, list[_Candidate]] = {}
    groups: dict[int, str] = {}
    pools: dict[str, set[str]] = {kind: set() for kind in cfg.types}
    counts = {"articles": 0, "articles_with_lead": 0, "heldout_articles": 0, "train_articles_seen": 0,
              "train_articles_not_in_sample": 0}
    for row in articles:
        counts["articles"] += 1
        lead = lead_section(row)
        if not lead:
            continue
        counts["articles_with_lead"] += 1
        article_id = int(row["id"])
        heldout = is_eval(article_id, eval_fraction)
        found: list[_Candidate] = []
        for sentence in split_sentences(lead):
            if not _usable(sentence, cfg):
                continue
            for start, end, kind in spans(sentence, cfg.types):
                candidate = _Candidate(article_id, row.get("title") or "", sentence, start, end, kind)
                pools[kind].add(candidate.gold)
                if heldout or trained_sentences is None or sentence_key(sentence) in trained_sentences:
                    found.append(candidate)
        if heldout:
            counts["heldout_articles"] += 1
        elif found:
            counts["train_articles_seen"] += 1
        else:
            counts["train_articles_not_in_sample"] += 1
        if found:
            per_article[article_id] = found
            groups[article_id] = "heldout" if heldout else "train"

    sorted_pools = {kind: sorted(values) for kind, values in pools.items()}
    # every article's distractors are filtered by their normalised form: normalise each pool entry once
    normalized = {span: normalize_answer(span) for values in pools.values() for span in values}
    chosen: dict[str, list[Probe]] = {"train": [], "heldout": []}
    for article_id in sorted(per_article):
        probe = _probe_for(per_article[article_id], groups[article_id], sorted_pools, normalized, cfg, seed)
        if probe is not None:
            chosen[probe.group].append(probe)
    want_heldout = round(cfg.count * cfg.heldout_share)
    take_heldout = min(len(chosen["heldout"]), max(want_heldout, cfg.count - len(chosen["train"])))
    take_train = min(len(chosen["train"]), cfg.count - take_heldout)
    rng = random.Random(f"{seed}:probe-sample")
    picked = rng.sample(chosen["heldout"], take_heldout) + rng.sample(chosen["train"], take_train)
    counts.update({"probes": len(picked), "probes_heldout": take_heldout, "probes_train": take_train,
                   "candidates_heldout": len(chosen["heldout"]), "candidates_train": len(chosen["train"])})
    return sorted(picked, key=lambda p: p.article_id), counts


def _probe_for(candidates: list[_Candidate], group: str, pools: dict[str, list[str]], normalized: dict[str, str],
               cfg: ProbesConfig, seed: int) -> Probe | None:
    """One probe for an article: a seeded choice among its spans that have enough distractors."""
    rng = random.Random(f"{seed}:{candidates[0].article_id}")
    order = list(range(len(candidates)))
    rng.shuffle(order)
    for index in order:
        candidate = candidates[index]
        gold = candidate.gold
        question = question_for(candidate.title, candidate.sentence, candidate.start, candidate.end, candidate.kind)
        if question is None:
            continue
        taken = {normalize_answer(gold)}
        options = [d for d in _similar(candidate.kind, gold, pools[candidate.kind])
                   if normalized[d] not in taken and d not in candidate.sentence]
        if len(options) < cfg.distractors:
            continue
        distractors = tuple(rng.sample(options, cfg.distractors))
        return Probe(probe_id=f"p{candidate.article_id}", article_id=candidate.article_id, title=candidate.title,
                     sentence=candidate.sentence, start=candidate.start, end=candidate.end, kind=candidate.kind,
                     gold=gold, distractors=distractors, group=group, question=question)
    return None


def write_probes(probes: list[Probe], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for probe in probes:
            handle.write(json.dumps(probe.to_dict(), ensure_ascii=False) + "\n")
    return path


def read_probes(path: Path) -> list[Probe]:
    with Path(path).open(encoding="utf-8") as handle:
        return [Probe.from_dict(json.loads(line)) for line in handle if line.strip()]
