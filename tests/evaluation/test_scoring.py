"""Cloze scoring and batched generation with the real SmolLM2-135M."""

from __future__ import annotations

import pytest

from ptwiki_llm.evaluation.scoring import cloze_scores
from ptwiki_llm.rag.answer import generate_batch


@pytest.fixture(scope="module")
def lm(model_store, tmp_path_factory):
    from ptwiki_llm.models.runtime import load_causal_lm
    from tests.training.conftest import tiny_config

    return load_causal_lm(tiny_config(tmp_path_factory.mktemp("wd"), model_store))


def _full_logprob(model, tokenizer, ids: list[int], start: int) -> float:
    """log P(ids[start:] | ids[:start]) from one forward pass over the whole sequence."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[i - 1, ids[i]].item() for i in range(start, len(ids)))


def test_cached_scores_equal_a_full_forward(lm):
    from ptwiki_llm.training.heldout import start_token

    model, tokenizer = lm
    context, prefix, suffix = "Portugal\nLisboa é a capital de Portugal.\n\n", "A capital de Portugal é ", "."
    scores = cloze_scores(model, tokenizer, context, prefix, ["Lisboa", "Madrid"], suffix, 1024)
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head = [start_token(tokenizer), *ids(context), *ids(prefix.rstrip())]
    for candidate, score in zip(["Lisboa", "Madrid"], scores, strict=True):
        span = ids(" " + candidate)
        full = head + span + ids(suffix)
        assert score.total_logprob == pytest.approx(_full_logprob(model, tokenizer, full, len(head)), abs=1e-3)
        assert score.span_logprob == pytest.approx(_full_logprob(model, tokenizer, head + span, len(head)), abs=1e-3)
    assert scores[0].total_logprob > scores[1].total_logprob  # the source says Lisboa


def test_context_is_cut_to_the_limit(lm):
    model, tokenizer = lm
    long_context = "Texto de contexto sem relação. " * 400
    short = cloze_scores(model, tokenizer, long_context, "O ano é ", ["1990"], ".", 64)
    assert len(short) == 1 and short[0].total_logprob < 0


def test_batched_greedy_generation_matches_the_answer_module(lm):
    from ptwiki_llm.rag.answer import generate, render_prompt

    model, tokenizer = lm
    prompts = [render_prompt(tokenizer, "Qual é a capital de Portugal?", []),
               render_prompt(tokenizer, "Quem escreveu Os Lusíadas? Responda em poucas palavras.", [])]
    batched = generate_batch(model, tokenizer, prompts, 12)
    assert batched[0] == generate(model, tokenizer, prompts[0], 12)
    assert generate_batch(model, tokenizer, prompts[1:], 12) == batched[1:]
    assert generate_batch(model, tokenizer, prompts, 12) == batched  # greedy: reproducible
    sampled = generate_batch(model, tokenizer, prompts, 12, sample=True, temperature=0.9, top_p=0.9, seed=5)
    assert sampled == generate_batch(model, tokenizer, prompts, 12, sample=True, temperature=0.9, top_p=0.9, seed=5)


@pytest.mark.parametrize(("setting", "native", "autocast"), [
    (False, True, False), (True, False, True), ("auto", True, True), ("auto", False, False)])
def test_precision_of_a_float32_model_follows_the_setting(lm, monkeypatch, setting, native, autocast):
    import ptwiki_llm.models.runtime as models
    from ptwiki_llm.evaluation.run import model_precision

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    precision = model_precision(lm[0], setting)
    assert (precision.device, precision.dtype, precision.autocast) == ("cpu", "float32", autocast)
    assert precision.label == ("float32 weights, bf16 autocast" if autocast else "float32 weights")


def test_bf16_autocast_scores_stay_near_float32_and_rank_alike(lm):
    import torch

    model, tokenizer = lm
    args = ("Portugal\nLisboa é a capital de Portugal.\n\n", "A capital de Portugal é ", ["Lisboa", "Madrid", "Roma"],
            ".", 1024)
    full = [s.total_logprob for s in cloze_scores(model, tokenizer, *args)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = [s.total_logprob for s in cloze_scores(model, tokenizer, *args)]
    assert half != full  # autocast is really on
    assert half == pytest.approx(full, abs=0.5)
    assert sorted(range(3), key=full.__getitem__) == sorted(range(3), key=half.__getitem__)


@pytest.fixture(scope="module")
def eager_lm(model_store, tmp_path_factory):
    """The model with eager attention (models.attn_implementation=eager): the reference for the sdpa default."""
    from ptwiki_llm.models.runtime import load_causal_lm
    from tests.training.conftest import tiny_config

    config = tiny_config(tmp_path_factory.mktemp("wd"), model_store)
    config.models.attn_implementation = "eager"
    return load_causal_lm(config)


def test_attention_kernel_is_sdpa_unless_set(tmp_path, model_store):
    from ptwiki_llm.models.runtime import attn_implementation
    from tests.training.conftest import tiny_config

    config = tiny_config(tmp_path, model_store)
    assert attn_implementation(config) == "sdpa"  # CPU and CUDA, training and inference
    config.models.attn_implementation = "eager"
    assert attn_implementation(config) == "eager"  # the setting wins


def test_choice_scores_on_a_rag_sized_prompt_equal_a_full_forward(lm, eager_lm):
    """The scores the arms compute (last-position logits of the head, candidates on its cache, sdpa) are those
    of one plain forward pass over the whole sequence (eager, every position's logits), up to float noise. The
    prompt is read as generation reads it: its own tokens, no start token before them."""
    from ptwiki_llm.evaluation.scoring import choice_scores, read_prompt

    model, tokenizer = lm  # loaded as the arms load it: sdpa by default
    eager, _ = eager_lm
    assert model.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    passage = ("Lisboa é a capital e a maior cidade de Portugal, situada na foz do rio Tejo. A cidade tem uma longa "
               "história e foi a sede do império português. ") * 12
    prompt = f"Fontes:\n{passage}\nPergunta: Qual é a capital de Portugal?\nResposta:"
    candidates = [" Lisboa", " Madrid e Barcelona", " Roma"]
    heads: list[dict] = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: heads.append(kwargs), with_kwargs=True)
    try:
        scores = choice_scores(model, tokenizer, prompt, candidates)
    finally:
        hook.remove()
    assert heads[0].get("logits_to_keep") == 1  # the head's prefill keeps the last position's logits only
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head = ids(prompt)
    assert len(head) > 400
    for candidate, score in zip(candidates, scores, strict=True):
        full = _full_logprob(eager, tokenizer, head + ids(candidate), len(head))
        assert score.span_logprob == pytest.approx(full, abs=2e-3)
    assert max(range(3), key=lambda i: scores[i].span_logprob) == 0
    # a prompt read once gives the same scores every time it is scored: scoring never changes its states
    read = read_prompt(model, tokenizer, prompt)
    states = [k.clone() for k, *_ in read.states]
    assert read.ids == head
    for _ in range(2):
        again = choice_scores(model, tokenizer, read, candidates)
        assert [s.span_logprob for s in again] == pytest.approx([s.span_logprob for s in scores], abs=1e-5)
    assert all(bool((k == before).all()) for (k, *_), before in zip(read.states, states, strict=True))
