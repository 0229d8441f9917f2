"""Each arm's prompt format: Alpaca for adapters, chat otherwise; both hold the same passages within the budget."""

from __future__ import annotations

import re
from types import SimpleNamespace

from ptwiki_llm.config import AnswerConfig, Config
from ptwiki_llm.evaluation.arms import arm_of
from ptwiki_llm.evaluation.prompts import arm_format, arm_prompt


class WordTokenizer:
    """One token per word, with offsets: enough for budgets and cuts."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        out: dict = {"input_ids": list(range(len(spans)))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


def _hit(text: str) -> SimpleNamespace:
    return SimpleNamespace(chunk=SimpleNamespace(title="Berlim", section="", url="u", article_id=1, text=text),
                           score=1.0)


def test_default_formats_follow_training():
    config = Config()
    assert [arm_format(config, arm_of(a)) for a in ("base", "base+rag", "ft", "ft+rag", "champion")] == [
        "chat", "chat", "alpaca", "alpaca", "alpaca"]


def test_alpaca_prompt_holds_the_same_passages_within_the_budget():
    tokenizer = WordTokenizer()
    cfg = AnswerConfig(max_new_tokens=16, min_source_tokens=10)
    hits = [_hit("Berlim é a capital da Alemanha. " * 40), _hit("Outro texto. " * 40)]
    chat, chat_used = arm_prompt("chat", tokenizer, "Qual é a capital?", hits, 150, cfg)
    alpaca, alpaca_used = arm_prompt("alpaca", tokenizer, "Qual é a capital?", hits, 150, cfg)
    assert "### Instrução:\nQual é a capital?" in alpaca and alpaca.endswith("### Resposta:\n")
    assert "### Entrada:\nFontes:" in alpaca and "###" not in chat
    assert len(tokenizer(alpaca)["input_ids"]) <= 150 and len(tokenizer(chat)["input_ids"]) <= 150
    assert [h.chunk.text for h in alpaca_used] == [h.chunk.text for h in chat_used][: len(alpaca_used)]
    closed, used = arm_prompt("alpaca", tokenizer, "Qual é a capital?", [], 150, cfg)
    assert used == [] and "### Entrada" not in closed
