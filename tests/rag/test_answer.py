"""Prompts with numbered sources inside the context budget, and a real generation with the base model."""

from __future__ import annotations

import pytest

from ptwiki_llm.config import AnswerConfig
from ptwiki_llm.rag.answer import answer_question, build_prompt, context_budget
from ptwiki_llm.rag.chunking import Chunk
from ptwiki_llm.rag.stores import Hit

BASE = "models/smollm2-135m-instruct-gguf"


def _hit(i: int, text: str, section: str = "") -> Hit:
    return Hit(Chunk(id=f"c{i}", article_id=i, revision=1, title=f"Artigo {i}", url=f"https://pt.wikipedia.org/wiki/A{i}",
                     section=section, position=0, text=text), score=1.0 - i / 10)


@pytest.fixture(scope="module")
def base_tokenizer(asset):
    from ptwiki_llm.models.runtime import load_staged_tokenizer

    return load_staged_tokenizer(asset(BASE))


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_prompt_numbers_the_sources_in_rank_order(base_tokenizer):
    hits = [_hit(1, "Lisboa é a capital de Portugal.", "Geografia"), _hit(2, "O Tejo passa por Lisboa.")]
    prompt, used, truncated = build_prompt(base_tokenizer, "Qual é a capital de Portugal?", hits, 1500, AnswerConfig())
    assert used == hits and truncated == 0
    first = prompt.index("[1] Artigo 1 — Geografia (https://pt.wikipedia.org/wiki/A1)")
    second = prompt.index("[2] Artigo 2")
    assert first < second < prompt.index("Pergunta: Qual é a capital de Portugal?")
    assert "apenas as fontes numeradas" in prompt and "<|im_start|>assistant" in prompt  # chat template applied


def test_sources_are_cut_then_left_out_to_fit_the_budget(base_tokenizer):
    long_text = " ".join(f"Frase {i} sobre a história de Lisboa e do seu porto." for i in range(200))
    hits = [_hit(1, "Lisboa é a capital de Portugal."), _hit(2, long_text), _hit(3, "Outra fonte.")]
    cfg = AnswerConfig(min_source_tokens=32)
    prompt, used, truncated = build_prompt(base_tokenizer, "Fale de Lisboa.", hits, 400, cfg)
    assert [h.chunk.id for h in used] == ["c1", "c2"] and truncated == 1
    assert _tokens(base_tokenizer, prompt) <= 400
    assert "Frase 0 sobre" in prompt and "Frase 199" not in prompt and "[3]" not in prompt
    # no room for even the minimum of a source: it is left out rather than cut to nothing
    prompt, used, truncated = build_prompt(base_tokenizer, "Fale de Lisboa.", hits[1:], 140, AnswerConfig())
    assert used == [] and "[1]" not in prompt and _tokens(base_tokenizer, prompt) <= 140


def test_budget_is_the_smaller_of_config_and_model_minus_the_answer():
    class _Model:
        class config:
            max_position_embeddings = 8192

    assert context_budget(_Model(), AnswerConfig(max_context_tokens=2048, max_new_tokens=200)) == 1848
    assert context_budget(_Model(), AnswerConfig(max_context_tokens=None, max_new_tokens=192)) == 8000


@pytest.mark.slow
def test_answer_with_the_base_model_returns_its_sources(asset, asset_folders, tmp_path):
    asset(BASE)
    from ptwiki_llm.models.runtime import load_causal_lm
    from tests.rag.conftest import make_config

    model, tokenizer = load_causal_lm(make_config(tmp_path / "wd", asset_folders))
    hits = [_hit(1, "Lisboa é a capital e a maior cidade de Portugal, na foz do rio Tejo.")]
    answer = answer_question("Qual é a capital de Portugal?", model, tokenizer,
                             AnswerConfig(max_new_tokens=12), hits)
    assert answer.sources == hits and answer.text.strip()
    assert answer.prompt_tokens < 600 and answer.sources_left_out == 0
    plain = answer_question("Qual é a capital de Portugal?", model, tokenizer, AnswerConfig(max_new_tokens=8))
    assert plain.sources == [] and "Fontes" not in plain.prompt
