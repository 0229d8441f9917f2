"""Generated answers a person can read: stopped at the end of the answer, cut before a loop, echoes named.

A small model asked a short question often keeps going after its answer: it restates the question,
repeats one sentence until the token budget runs out, or starts a new paragraph of something else.
Decoding penalties do not fix that (they turn the answer itself into gibberish), so generation stops
instead: at a stop string (a blank line ends a short answer), or as soon as a line or sentence repeats
an earlier one or a run of words comes round again. What was generated is kept (``raw``) beside what is
shown (``text``, cut before the repetition), and an answer that only restates the question shows as no
answer. The same detector measures, on any text, whether it loops or echoes (the evaluation's metric).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NO_ANSWER = "(no answer)"
LOOP_NGRAM = 5  # a run of this many words seen twice is a loop; answers of a few sentences rarely repeat one
_WORD = re.compile(r"\w+", re.UNICODE)
_SEGMENT_END = re.compile(r"(?<=[.!?])\s+|\n+")
# words that restate a question without answering it: articles, prepositions, interrogatives, copulas
_FUNCTION_WORDS = frozenset(re.findall(r"\w+", (
    "a as o os um uma uns umas de do da dos das em no na nos nas por pelo pela pelos pelas para com sem e ou que "
    "quem qual quais quando onde como porque quanto quanta quantos quantas foi foram e era eram ser sao esta estao "
    "sobre ao aos se lhe resposta pergunta")))


@dataclass(frozen=True)
class StopRules:
    """When generation ends besides the model's end-of-sequence token and ``max_new_tokens``."""

    max_new_tokens: int
    stop_strings: tuple[str, ...] = ("\n\n",)
    stop_on_repetition: bool = True


@dataclass(frozen=True)
class Generated:
    raw: str  # what the model generated, up to where it stopped
    text: str  # what is shown: before the stop string and any repetition; "" when there is no answer
    loop: bool  # the generated text repeated a line, a sentence or a run of words
    echo: bool  # the answer only restates the question

    @property
    def shown(self) -> str:
        return self.text or NO_ANSWER

    @property
    def loop_or_echo(self) -> bool:
        return self.loop or self.echo


def _fold(text: str) -> str:
    """Lower case without accents: 'Pádua' and 'padua' are the same word to the detectors."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _segments(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line or sentence; the last one may still be unfinished."""
    spans, start = [], 0
    for match in _SEGMENT_END.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def repetition_start(text: str, finished: bool = True) -> int | None:
    """Where ``text`` starts repeating itself (a character offset), or None.

    A line or sentence equal to an earlier one (ignoring case, accents and punctuation), or a run of
    ``LOOP_NGRAM`` words seen before. With ``finished=False`` the last segment, which may still grow, is
    not compared whole.
    """
    seen: set[str] = set()
    segments = _segments(text)
    complete = segments if finished else segments[:-1]
    for start, end in complete:
        key = " ".join(_WORD.findall(_fold(text[start:end])))
        if key and key in seen:
            return start
        if key:
            seen.add(key)
    words = [(m.start(), _fold(m.group())) for m in _WORD.finditer(text)]
    first: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - LOOP_NGRAM + 1):
        gram = tuple(w for _, w in words[i : i + LOOP_NGRAM])
        if gram in first:
            return words[i][0]
        first[gram] = i
    return None


def is_loop(text: str) -> bool:
    return repetition_start(text) is not None


def is_echo(answer: str, question: str) -> bool:
    """True when ``answer`` says nothing the question did not: every word of it (function words aside) is in
    the question. An empty answer is no echo (it is no answer)."""
    words = _WORD.findall(_fold(answer))
    if not words:
        return False
    content = [w for w in words if w not in _FUNCTION_WORDS] or words
    asked = set(_WORD.findall(_fold(question)))
    return all(w in asked for w in content)


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    cut = min((i for s in stop_strings if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def finish(raw: str, question: str, stop_strings: Sequence[str] = ("\n\n",)) -> Generated:
    """The answer shown for generated text ``raw``: before the first stop string and before any repetition;
    empty when that only restates ``question``."""
    raw = raw.strip()
    text = cut_at_stop(raw, stop_strings).strip()
    start = repetition_start(text)
    if start is not None:
        text = text[:start].strip()
    echo = is_echo(text, question)
    return Generated(raw=raw, text="" if echo else text, loop=is_loop(raw), echo=echo)


class _StopCriteria:
    """A transformers stopping criterion, per row of the batch: a stop string or a repetition in the new text."""

    def __init__(self, tokenizer: Any, prompt_length: int, rules: StopRules) -> None:
        self.tokenizer, self.prompt_length, self.rules = tokenizer, prompt_length, rules
        self.done: list[bool] | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.done is None:
            self.done = [False] * input_ids.shape[0]
        for row in range(input_ids.shape[0]):
            if self.done[row]:
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length:], skip_special_tokens=True).lstrip()
            stopped = any(s and s in text for s in self.rules.stop_strings)
            looped = self.rules.stop_on_repetition and repetition_start(text, finished=False) is not None
            self.done[row] = stopped or looped
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[str], questions: Sequence[str], rules: StopRules,
                     *, sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                     seed: int = 0, reads: Sequence[Any] | None = None) -> list[Generated]:
    """Answers to ``prompts`` generated together (left padding), each stopped by ``rules`` and finished against
    its question; greedy unless ``sample``, seeded. ``reads``: the prompts already read (evaluation/scoring.py:
    read_prompt), whose key/value states generation continues from instead of reading the prompts again."""
    import torch
    from transformers import StoppingCriteriaList

    from ptwiki_llm.models.runtime import cache_keyword

    if len(prompts) != len(questions):
        raise ValueError(f"{len(prompts)} prompts but {len(questions)} questions")
    if not prompts:
        return []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    inputs = {k: v.to(next(model.parameters()).device) for k, v in inputs.items()}
    prompt_length = inputs["input_ids"].shape[1]
    options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": rules.max_new_tokens, "pad_token_id": pad}
    if sample:
        options.update(temperature=temperature, top_p=top_p)
    else:  # the model's generation_config may carry sampling settings that greedy decoding warns about
        options.update(temperature=None, top_p=None, top_k=None)
    if rules.stop_strings or rules.stop_on_repetition:
        options["stopping_criteria"] = StoppingCriteriaList([_StopCriteria(tokenizer, prompt_length, rules)])
    if reads is not None and prompt_length > 1:
        options[cache_keyword(model)] = _batched_cache(reads, inputs["input_ids"], inputs["attention_mask"])
    torch.manual_seed(seed)
    with torch.inference_mode():
        output = model.generate(**inputs, **options)
    new = output[:, prompt_length:]
    raws = [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    return [finish(raw, question, rules.stop_strings) for raw, question in zip(raws, questions, strict=True)]


def _batched_cache(reads: Sequence[Any], input_ids: Any, attention_mask: Any) -> Any:
    """The key/value states of prompts read one by one, left-padded into one batch as generate would have
    computed them, without the last position: generate reads the last token itself, which gives it the
    logits its first step needs (a cache covering the whole prompt would leave it nothing to read)."""
    import torch
    from transformers import DynamicCache

    lengths = attention_mask.sum(dim=1).tolist()
    width = attention_mask.shape[1] - 1
    if len(reads) != len(lengths) or any(r.ids != input_ids[row, width + 1 - n :].tolist()
                                         for row, (r, n) in enumerate(zip(reads, lengths, strict=True))):
        raise ValueError("the prompts read are not the prompts to generate from (tokens differ)")
    layers = []
    for states in zip(*(r.states for r in reads), strict=True):
        padded = []
        for part in (0, 1):  # keys, values: [1, heads, length, dim] each
            rows = [s[part][:, :, : n - 1] for s, n in zip(states, lengths, strict=True)]
            padded.append(torch.cat([torch.nn.functional.pad(r, (0, 0, width - r.shape[2], 0)) for r in rows]))
        layers.append((padded[0], padded[1], *states[0][2:]))
    return DynamicCache(layers)


def is_short_question(question: str) -> bool:
    """A question (it ends with '?'): answered in a sentence or two, so it gets the short token budget."""
    return question.rstrip().endswith("?")
