"""Each arm's prompt format: the base model's chat template, or the instruction template the adapters learnt.

The adapters are trained on the format step's Alpaca-style examples (``data/format.py``: "### Instrução",
"### Entrada", "### Resposta"), the instruct base model on its chat template. ``evaluation.prompt_formats``
names the format of each arm's model (default: chat for base, alpaca for ft and champion), so each is asked
the way it was tuned; setting every model to the same format removes the format from the comparison. The
passages RAG arms read are the same in both formats (chosen within the budget by ``rag/answer.py``).
"""

from __future__ import annotations

from typing import Any

from ptwiki_llm.config import Config
from ptwiki_llm.data.format import PROMPT_NO_INPUT, PROMPT_WITH_INPUT
from ptwiki_llm.evaluation.arms import Arm
from ptwiki_llm.rag.answer import build_prompt, render_prompt


def arm_format(config: Config, arm: Arm) -> str:
    return config.evaluation.prompt_formats.get(arm.model, "chat")


def _blocks(hits: list[Any]) -> list[str]:
    out = []
    for number, hit in enumerate(hits, 1):
        chunk = hit.chunk
        heading = f"{chunk.title} — {chunk.section}" if chunk.section else chunk.title
        out.append(f"[{number}] {heading}\n{chunk.text}")
    return out


def alpaca_prompt(question: str, blocks: list[str]) -> str:
    if blocks:
        return PROMPT_WITH_INPUT.format(instruction=question, input="Fontes:\n\n" + "\n\n".join(blocks))
    return PROMPT_NO_INPUT.format(instruction=question)


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut(tokenizer: Any, text: str, max_tokens: int) -> str:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= max_tokens else text[: offsets[max(1, max_tokens) - 1][1]].rstrip() + " …"


def arm_prompt(fmt: str, tokenizer: Any, question: str, hits: list[Any], budget: int,
               answer_cfg: Any) -> tuple[str, list[Any]]:
    """The prompt of one question in format ``fmt`` and the passages it holds (none for closed-book arms).

    Both formats hold the passages ``rag/answer.py: build_prompt`` chooses for the chat prompt; the Alpaca
    prompt cuts the last of them further when its own wording leaves less room in ``budget`` tokens.
    """
    if not hits:
        return (render_prompt(tokenizer, question, []) if fmt == "chat" else alpaca_prompt(question, [])), []
    prompt, used, _ = build_prompt(tokenizer, question, hits, budget, answer_cfg)
    if fmt == "chat":
        return prompt, used
    blocks = _blocks(used)
    prompt = alpaca_prompt(question, blocks)
    while blocks and _count(tokenizer, prompt) > budget:
        excess = _count(tokenizer, prompt) - budget + 8  # token counts of pieces and whole differ at the seams
        last = _count(tokenizer, blocks[-1])
        if last - excess >= answer_cfg.min_source_tokens:
            blocks[-1] = _cut(tokenizer, blocks[-1], last - excess)
        else:
            blocks.pop()
            used = used[: len(blocks)]
        prompt = alpaca_prompt(question, blocks)
    return prompt, used
