"""Retrieval-augmented answers: a Portuguese prompt with numbered sources, within the context budget.

Works with any causal LM and tokenizer pair (the base model, or base + a registered adapter): the
prompt goes through the tokenizer's chat template when it has one, plain text otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ptwiki_llm.config import AnswerConfig
from ptwiki_llm.rag.generation import Generated, StopRules, generate_answers, is_short_question
from ptwiki_llm.rag.stores import Hit

SYSTEM_RAG = (
    "Você é um assistente que responde em português. Responda à pergunta usando apenas as fontes numeradas "
    "abaixo e cite as fontes usadas no formato [1], [2]. Se as fontes não trouxerem a resposta, diga que "
    "não encontrou a informação nas fontes."
)
SYSTEM_PLAIN = "Você é um assistente que responde em português, de forma breve e correta."
_MARGIN_TOKENS = 8  # token counts of pieces and of the joined prompt differ by a few at the seams


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Hit] = field(default_factory=list)
    prompt: str = ""
    prompt_tokens: int = 0
    sources_truncated: int = 0
    sources_left_out: int = 0
    generated: Generated | None = None  # the generated text, where it stopped, and whether it looped or echoed


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _source_block(number: int, hit: Hit, text: str) -> str:
    chunk = hit.chunk
    heading = f"{chunk.title} — {chunk.section}" if chunk.section else chunk.title
    return f"[{number}] {heading} ({chunk.url})\n{text}"


def render_prompt(tokenizer: Any, question: str, blocks: list[str]) -> str:
    if blocks:
        user = "Fontes:\n\n" + "\n\n".join(blocks) + f"\n\nPergunta: {question}"
        system = SYSTEM_RAG
    else:
        user, system = question, SYSTEM_PLAIN
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{user}\n\nResposta:"


def context_budget(model: Any, cfg: AnswerConfig) -> int:
    """Prompt tokens allowed: the smaller of the configured and the model's context, minus the answer."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 2048
    if cfg.max_context_tokens:
        limit = min(limit, cfg.max_context_tokens)
    budget = limit - cfg.max_new_tokens
    if budget < 64:
        raise ValueError(f"context budget too small: {limit} tokens of context, {cfg.max_new_tokens} for the answer")
    return budget


def _truncate(tokenizer: Any, text: str, max_tokens: int) -> str:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens - 1][1]].rstrip() + " …"


def build_prompt(tokenizer: Any, question: str, hits: list[Hit], budget_tokens: int,
                 cfg: AnswerConfig) -> tuple[str, list[Hit], int]:
    """The prompt, the sources it holds (in rank order, numbered from 1) and how many were cut short.

    Sources are added best first while they fit; the first that does not fit is cut to the room left
    (left out when that is under ``min_source_tokens``) and the rest are left out.
    """
    remaining = budget_tokens - _count(tokenizer, render_prompt(tokenizer, question, [""])) - _MARGIN_TOKENS
    blocks: list[str] = []
    used: list[Hit] = []
    truncated = 0
    for hit in hits:
        number = len(blocks) + 1
        block = _source_block(number, hit, hit.chunk.text)
        cost = _count(tokenizer, block) + 2
        if cost <= remaining:
            blocks.append(block)
            used.append(hit)
            remaining -= cost
            continue
        room = remaining - _count(tokenizer, _source_block(number, hit, "")) - 4
        if room >= cfg.min_source_tokens:
            blocks.append(_source_block(number, hit, _truncate(tokenizer, hit.chunk.text, room)))
            used.append(hit)
            truncated += 1
        break
    prompt = render_prompt(tokenizer, question, blocks)
    while blocks and _count(tokenizer, prompt) > budget_tokens:  # seams cost more than the margin: drop the last
        blocks.pop()
        used.pop()
        prompt = render_prompt(tokenizer, question, blocks)
    return prompt, used, truncated


def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, *,
                   sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """What the model generates for ``prompts`` (left padding), with no stop rule but EOS and ``max_new_tokens``;
    greedy unless ``sample``, seeded. Answers a person reads go through :func:`answer_question` instead."""
    rules = StopRules(max_new_tokens=max_new_tokens, stop_strings=(), stop_on_repetition=False)
    generated = generate_answers(model, tokenizer, prompts, prompts, rules, sample=sample, temperature=temperature,
                                 top_p=top_p, seed=seed)
    return [g.raw for g in generated]


def generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding (answers are reproducible); returns only the new text."""
    return generate_batch(model, tokenizer, [prompt], max_new_tokens)[0]


def stop_rules(question: str, cfg: AnswerConfig) -> StopRules:
    """A question gets a short budget and ends at a blank line; any other request the long budget."""
    if is_short_question(question):
        return StopRules(cfg.question_max_new_tokens, tuple(cfg.stop_strings), cfg.stop_on_repetition)
    return StopRules(cfg.max_new_tokens, (), cfg.stop_on_repetition)


def answer_question(question: str, model: Any, tokenizer: Any, cfg: AnswerConfig,
                    hits: list[Hit] | None = None) -> Answer:
    """Answer ``question`` with ``model``; with ``hits`` (retrieved passages) as numbered sources."""
    question = question.strip()
    if not question:
        raise ValueError("empty question")
    rules = stop_rules(question, cfg)
    budget = context_budget(model, cfg.model_copy(update={"max_new_tokens": rules.max_new_tokens}))
    if hits:
        prompt, used, truncated = build_prompt(tokenizer, question, hits, budget, cfg)
    else:
        prompt, used, truncated = render_prompt(tokenizer, question, []), [], 0
    prompt_tokens = _count(tokenizer, prompt)
    if prompt_tokens > budget:
        raise ValueError(f"the question alone takes {prompt_tokens} tokens, over the budget of {budget}")
    (generated,) = generate_answers(model, tokenizer, [prompt], [question], rules)
    return Answer(question=question, text=generated.shown, sources=used, prompt=prompt, prompt_tokens=prompt_tokens,
                  sources_truncated=truncated, sources_left_out=len(hits or []) - len(used), generated=generated)
