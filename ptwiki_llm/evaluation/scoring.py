"""Model primitives of the evaluation: cloze log-likelihoods and per-text perplexity (generation: rag/answer.py).

Cloze scoring reads the context (retrieved sources for RAG arms, nothing otherwise) and the sentence
up to the masked span once, keeps its key/value cache, and scores all candidate spans plus the rest of
the sentence as one batch on that cache: a RAG context of a thousand tokens is read once per probe, not
once per candidate, and a probe costs two forward passes. Tokens are context | span | suffix, each
tokenized on its own (as lm-evaluation-harness splits context and continuation), so every candidate is
scored after the very same context tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ptwiki_llm.training.heldout import heldout_metrics, start_token


@dataclass(frozen=True)
class ClozeScore:
    span_logprob: float  # log P(span | context, prefix)
    total_logprob: float  # log P(span, suffix | context, prefix): what candidates are ranked by


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _forward_parameters(model: Any) -> Any:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inspect.signature(base.forward).parameters


def _cache_keyword(model: Any) -> str:
    """transformers 5.x renames ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40)."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


def _last_logits_only(model: Any) -> dict[str, int]:
    """Keyword asking the head's forward for the last position's logits alone: only that one is read, and the
    output layer over the whole vocabulary at every position is a fifth of a small model's prefill."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}


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


def choice_scores(model: Any, tokenizer: Any, prompt: str, candidates: Sequence[str]) -> list[ClozeScore]:
    """Multiple choice by likelihood: each candidate answer right after the whole ``prompt`` (a question, and for
    RAG arms its passages, in the arm's prompt format); the prompt already fits the model's context."""
    head = [start_token(tokenizer), *_ids(tokenizer, prompt)]
    return _continuations(model, tokenizer, head, [_ids(tokenizer, c) for c in candidates], [])


def _continuations(model: Any, tokenizer: Any, head: list[int], spans: list[list[int]],
                   suffix_ids: list[int]) -> list[ClozeScore]:
    import torch

    tails = [span + suffix_ids for span in spans]
    width = max(len(tail) for tail in tails)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device(model)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([head], device=device), use_cache=True, **_last_logits_only(model))
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        cache = out.get("cache") or out.get("past_key_values")
        # one row of the head's cache per candidate; the candidates run as one batch. Padding goes on the
        # right, where causal attention keeps it out of every real token's view, so no mask is needed.
        cache.reorder_cache(torch.zeros(len(tails), dtype=torch.long, device=device))
        batch = torch.tensor([tail + [pad] * (width - len(tail)) for tail in tails], device=device)
        step = model(input_ids=batch, use_cache=True, **{_cache_keyword(model): cache})
        logprobs = torch.log_softmax(step.logits.float(), dim=-1)
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
