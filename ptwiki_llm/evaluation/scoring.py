"""Model primitives of the evaluation: cloze log-likelihoods and per-text perplexity (generation: rag/answer.py).

Cloze scoring reads the context (retrieved sources for RAG arms, nothing otherwise) and the sentence
up to the masked span once, keeps its key/value cache, and scores all candidate spans plus the rest of
the sentence as one batch on that cache: a RAG context of a thousand tokens is read once per probe, not
once per candidate, and a probe costs two forward passes. Tokens are context | span | suffix, each
tokenized on its own (as lm-evaluation-harness splits context and continuation), so every candidate is
scored after the very same context tokens.

Multiple choice reads the prompt exactly as generation does (the same tokens, no start token before a
non-empty prompt), so a question that is both scored and answered is read once: ``read_prompt`` keeps
the prompt's key/value states, ``choice_scores`` continues from them, and ``generate_answers`` starts
from them too (rag/generation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ptwiki_llm.models.runtime import cache_keyword, forward_parameters
from ptwiki_llm.training.heldout import heldout_metrics, start_token


@dataclass(frozen=True)
class ClozeScore:
    span_logprob: float  # log P(span | context, prefix)
    total_logprob: float  # log P(span, suffix | context, prefix): what candidates are ranked by


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _last_logits_only(model: Any) -> dict[str, int]:
    """Keyword asking the head's forward for the last position's logits alone: only that one is read, and the
    output layer over the whole vocabulary at every position is a fifth of a small model's prefill."""
    return {"logits_to_keep": 1} if "logits_to_keep" in forward_parameters(model) else {}


def cloze_scores(model: Any, tokenizer: Any, context: str, prefix: str, candidates: Sequence[str], suffix: str,
                 max_context_tokens: int) -> list[ClozeScore]:
    """Score each candidate span between ``prefix`` and ``suffix`` after ``context``.

    A trailing space of the prefix moves into the span (" 1964", as BPE tokenizers write words);
    the context is cut from its end when context + prefix exceed ``max_context_tokens``.
    """
    stripped = prefix.rstrip()
    lead_space = " " if len(stripped) < len(prefix) else ""
    prefix_ids = _ids(tokenizer, stripped)
    context_ids = _ids(tokenizer, context)
    room = max(0, max_context_tokens - len(prefix_ids) - 1)
    head = [start_token(tokenizer), *context_ids[:room], *prefix_ids]
    spans = [_ids(tokenizer, lead_space + candidate) for candidate in candidates]
    return _continuations(model, tokenizer, head, spans, _ids(tokenizer, suffix))


@dataclass(frozen=True)
class PromptRead:
    """A prompt after one forward pass: its tokens, the log-probabilities of the token after it, and its
    key/value states per layer (batch of one), from which scoring and generation both continue."""

    ids: list[int]
    next_logprobs: Any  # [vocab] float32
    states: list[tuple[Any, ...]]  # per layer: (keys, values[, sliding window]) as DynamicCache iterates them

    def cache(self, rows: int = 1) -> Any:
        """A fresh cache of these states repeated ``rows`` times (the states themselves are never modified)."""
        from transformers import DynamicCache

        return DynamicCache([(k.repeat(rows, 1, 1, 1), v.repeat(rows, 1, 1, 1), *rest) for k, v, *rest in self.states])


def read_prompt(model: Any, tokenizer: Any, prompt: str) -> PromptRead:
    """One forward pass over ``prompt``, tokenized as generation tokenizes it; an empty prompt reads the start
    token (the first token needs something to be predicted from)."""
    return _read(model, _ids(tokenizer, prompt) or [start_token(tokenizer)])


def _read(model: Any, ids: list[int]) -> PromptRead:
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids], device=_device(model)), use_cache=True, **_last_logits_only(model))
        cache = out.get("cache") or out.get("past_key_values")
        return PromptRead(ids, torch.log_softmax(out.logits[0, -1].float(), dim=-1), [tuple(s) for s in cache])


def choice_scores(model: Any, tokenizer: Any, prompt: str | PromptRead, candidates: Sequence[str]) -> list[ClozeScore]:
    """Multiple choice by likelihood: each candidate answer right after the whole ``prompt`` (a question, and for
    RAG arms its passages, in the arm's prompt format; or the prompt already read); the prompt already fits the
    model's context."""
    read = prompt if isinstance(prompt, PromptRead) else read_prompt(model, tokenizer, prompt)
    return _continuations(model, tokenizer, read, [_ids(tokenizer, c) for c in candidates], [])


def _continuations(model: Any, tokenizer: Any, head: list[int] | PromptRead, spans: list[list[int]],
                   suffix_ids: list[int]) -> list[ClozeScore]:
    import torch

    read = head if isinstance(head, PromptRead) else _read(model, head)
    tails = [span + suffix_ids for span in spans]
    width = max(len(tail) for tail in tails)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device(model)
    with torch.inference_mode():
        # one row of the head's states per candidate; the candidates run as one batch. Padding goes on the
        # right, where causal attention keeps it out of every real token's view, so no mask is needed.
        batch = torch.tensor([tail + [pad] * (width - len(tail)) for tail in tails], device=device)
        step = model(input_ids=batch, use_cache=True, **{cache_keyword(model): read.cache(len(tails))})
        logprobs = torch.log_softmax(step.logits.float(), dim=-1)
    first = read.next_logprobs
    scores: list[ClozeScore] = []
    for row, (span, tail) in enumerate(zip(spans, tails, strict=True)):
        targets = torch.tensor(tail[1:], device=logprobs.device)  # a sharded model's logits: its last GPU
        rest = logprobs[row, : len(tail) - 1].gather(1, targets[:, None])[:, 0].tolist()
        per_token = [first[tail[0]].item(), *rest]
        scores.append(ClozeScore(sum(per_token[: len(span)]), sum(per_token)))
    return scores


def text_nll(model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, float]:
    """Summed negative log-likelihood (nats), tokens and UTF-8 bytes of one text (heldout_metrics on it alone)."""
    scores = heldout_metrics(model, tokenizer, [text], max_length)
    return {"nll": scores["loss"] * scores["tokens"], "tokens": scores["tokens"], "bytes": scores["bytes"]}
