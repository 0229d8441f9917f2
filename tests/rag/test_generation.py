"""Stop rules, the loop and echo detectors, and generation with them on the real base model."""

from __future__ import annotations

import pytest

from ptwiki_llm.rag.generation import (
    NO_ANSWER,
    StopRules,
    finish,
    generate_answers,
    is_echo,
    is_loop,
    is_short_question,
    repetition_start,
)

BASE = "models/smollm2-135m-instruct-gguf"


def test_a_repeated_sentence_or_line_is_a_loop_and_is_cut_before_it():
    looped = "Onde nasceu? Onde nasceu? Onde nasceu?"
    assert is_loop(looped) and repetition_start(looped) == looped.index("Onde", 1)
    assert is_loop("Mantegna nasceu em Pádua.\nMANTEGNA nasceu em padua")  # case, accents and punctuation aside
    assert is_loop("1506 1506 1506 1506 1506 1506")  # a run of words coming round again
    assert not is_loop("Andrea Mantegna nasceu em Isola di Carturo, perto de Pádua, em 1431.")
    assert not is_loop("")


def test_an_unfinished_last_sentence_is_not_compared_while_generating():
    growing = "Ele nasceu em Pádua. Ele nasceu em Pádua"
    assert repetition_start(growing, finished=False) is None
    assert repetition_start(growing + ". E", finished=False) == growing.index("Ele", 1)


def test_an_answer_that_only_restates_the_question_is_an_echo():
    question = "Onde nasceu Andrea Mantegna?"
    assert is_echo("Onde nasceu?", question)
    assert is_echo("Andrea Mantegna.", question)
    assert is_echo("Andrea Mantegna nasceu em", question)  # function words add nothing
    assert not is_echo("Em Isola di Carturo.", question)
    assert not is_echo("Sim", "Lisboa é a capital de Portugal?")
    assert not is_echo("", question)  # no answer is not an echo


def test_finish_cuts_at_the_stop_string_then_before_a_repetition_and_names_echoes():
    done = finish("Ao ano 1506, Mantegna morreu.\n\nOutra pergunta: quem", "Em que ano morreu Andrea Mantegna?")
    assert done.text == "Ao ano 1506, Mantegna morreu." and not done.loop and not done.echo
    looped = finish("Ele nasceu em Pádua. Ele nasceu em Pádua. Ele nasceu em Pádua.", "Onde nasceu Mantegna?")
    assert looped.text == "Ele nasceu em Pádua." and looped.loop and looped.loop_or_echo
    echoed = finish("Onde nasceu? Onde nasceu?", "Onde nasceu Andrea Mantegna?")
    assert echoed.text == "" and echoed.shown == NO_ANSWER and echoed.echo and echoed.loop
    assert finish("", "Quem?").shown == NO_ANSWER


def test_questions_get_the_short_budget():
    assert is_short_question("Onde nasceu Andrea Mantegna? ")
    assert not is_short_question("Explique o que é a fotossíntese.")


@pytest.fixture(scope="module")
def base_model(asset, asset_folders, tmp_path_factory):
    asset(BASE)
    from ptwiki_llm.models.runtime import load_causal_lm
    from tests.rag.conftest import make_config

    return load_causal_lm(make_config(tmp_path_factory.mktemp("wd"), asset_folders))


@pytest.mark.slow
def test_generation_stops_early_and_unstopped_generation_runs_to_the_budget(base_model):
    from ptwiki_llm.rag.answer import render_prompt

    model, tokenizer = base_model
    questions = ["Onde nasceu Andrea Mantegna?", "Qual é a capital de Portugal?"]
    prompts = [render_prompt(tokenizer, q, []) for q in questions]
    free = generate_answers(model, tokenizer, prompts, questions, StopRules(64, (), False))
    stopped = generate_answers(model, tokenizer, prompts, questions, StopRules(64))
    for loose, tight in zip(free, stopped, strict=True):
        # the same greedy tokens up to where the rules stopped: the stopped text is a prefix of the free one
        assert loose.raw.startswith(tight.raw.rstrip()), (loose.raw, tight.raw)
        assert "\n\n" not in tight.text and repetition_start(tight.text) is None
    assert sum(len(g.raw) for g in stopped) <= sum(len(g.raw) for g in free)
    # batched and one at a time agree (left padding)
    assert generate_answers(model, tokenizer, prompts[1:], questions[1:], StopRules(64)) == stopped[1:]


@pytest.mark.slow
def test_generation_from_prompts_already_read_equals_generation_from_text(base_model):
    """The evaluation reads each QA prompt once (its choices are scored there) and generates from those states:
    the answers are those of generation that reads the prompts itself, for prompts of different lengths."""
    from ptwiki_llm.evaluation.scoring import read_prompt
    from ptwiki_llm.rag.answer import render_prompt

    model, tokenizer = base_model
    questions = ["Onde nasceu Andrea Mantegna?", "Qual é a capital de Portugal e qual é o seu maior rio?", "Quem?"]
    prompts = [render_prompt(tokenizer, q, []) for q in questions]
    reads = [read_prompt(model, tokenizer, p) for p in prompts]
    rules = StopRules(24)
    assert generate_answers(model, tokenizer, prompts, questions, rules, reads=reads) == \
        generate_answers(model, tokenizer, prompts, questions, rules)
    with pytest.raises(ValueError, match="tokens differ"):  # states of other prompts are refused
        generate_answers(model, tokenizer, prompts, questions, rules, reads=reads[::-1])
