"""`ask`, `compare` and their library function on a trained, registered and indexed workdir (one tiny run)."""

from __future__ import annotations

import json

import pytest

from ptwiki_llm.rag.evidence import NOT_FOUND, split_sentences
from tests.conftest import TINY_RUN_ARTICLES, run_cli, workdir_config

# the first test here may pay for the session's tiny pipeline run (pipeline_run): minutes on a busy machine
pytestmark = pytest.mark.timeout(2400)


def test_sentences_split_at_portuguese_sentence_ends():
    text = ("Andrea Mantegna (Isola di Carturo, 1431 — Mântua, 13 de setembro de 1506) foi um pintor italiano. "
            "Estudou em Pádua com Squarcione; trabalhou depois em Mântua.\nObras principais: curto.")
    assert split_sentences(text) == [
        "Andrea Mantegna (Isola di Carturo, 1431 — Mântua, 13 de setembro de 1506) foi um pintor italiano.",
        "Estudou em Pádua com Squarcione; trabalhou depois em Mântua.",
        "Obras principais: curto.",
    ]


@pytest.fixture(scope="module")
def answerer(pipeline_run):
    from ptwiki_llm.rag.answering import Answerer

    workdir, _ = pipeline_run
    answerer = Answerer(workdir_config(workdir))
    yield answerer
    answerer.close()


@pytest.fixture(scope="module")
def example(answerer):
    from ptwiki_llm.rag.examples import example_questions

    found = example_questions(answerer.config, count=3, retriever=answerer.retriever())
    assert found, "no example question found about the indexed articles"
    return found[0]


@pytest.mark.slow
def test_examples_ask_about_indexed_articles_that_retrieval_ranks_first(answerer, example):
    assert example.question.endswith("?") and example.title in example.question
    hits = answerer.retriever().retrieve(example.question, k=1, mode="vector")
    assert hits[0].chunk.title == example.title
    assert example.relevance >= answerer.config.rag.answer.not_found_below


@pytest.mark.slow
def test_every_arm_answers_with_models_loaded_once_and_rag_arms_show_evidence(answerer, example):
    arms, _ = answerer.compare_arms()
    assert [a.name for a in arms] == ["base", "base+rag", "ft", "ft+rag"]
    first = answerer.answer(example.question, arms)
    loaded = {name: id(entry[0]) for name, entry in answerer._models.items()}
    assert set(loaded) == {"base", "ft"}
    again = answerer.answer(example.question, arms)
    assert {name: id(entry[0]) for name, entry in answerer._models.items()} == loaded  # nothing loaded twice
    assert [a.text for a in again.answers] == [a.text for a in first.answers]  # greedy: the same answers
    for answer in first.answers:
        assert answer.text.strip() and answer.generated is not None
        assert answer.model == ("base" if answer.arm.startswith("base") else f"ft v{answerer.versions.challenger}")
        if not answer.rag:
            assert answer.sources == [] and answer.evidence == []
            continue
        assert answer.sources and answer.evidence
        for evidence in answer.evidence:
            assert 1 <= evidence.source <= len(answer.sources)
            assert evidence.sentence in answer.sources[evidence.source - 1].chunk.text
    assert len(first.relevance) == len(first.hits) and not first.not_found
    json.dumps(first.to_dict())  # what the arena sends


@pytest.mark.slow
def test_rag_says_not_found_under_the_threshold_without_generating(answerer, example, monkeypatch):
    monkeypatch.setattr(answerer.config.rag.answer, "not_found_below", 1.01)  # no cosine reaches it
    arms = [answerer.arm("base", rag=True), answerer.arm("base", rag=False)]
    result = answerer.answer(example.question, arms)
    rag, plain = result.answers
    assert result.not_found and rag.not_found and rag.text == NOT_FOUND and rag.generated is None
    assert rag.sources and rag.evidence == []  # what was retrieved is still shown
    assert not plain.not_found and plain.generated is not None


@pytest.mark.slow
def test_cli_ask_examples_ask_and_compare(pipeline_run, example):
    workdir, _ = pipeline_run
    env = {"PTWIKI_RAG__EMBEDDING__DEVICE": "cpu"}
    listed = run_cli(workdir, "ask", "--examples", max_articles=TINY_RUN_ARTICLES, **env)
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    assert f'ptwiki-llm ask "{example.question}" --rag' in listed.stdout

    asked = run_cli(workdir, "ask", example.question, "--rag", max_articles=TINY_RUN_ARTICLES, **env)
    assert asked.returncode == 0, asked.stdout[-3000:] + asked.stderr[-3000:]
    assert "Evidência" in asked.stdout and "Fontes" in asked.stdout and "(relevance 0." in asked.stdout

    compared = run_cli(workdir, "compare", example.question, max_articles=TINY_RUN_ARTICLES, **env)
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    for label in ("base", "base+rag", "ft v1", "ft v1+rag", "evidence", "Fontes", "[1] "):
        assert label in compared.stdout, label
