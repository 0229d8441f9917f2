"""Probe generation: spans of each type, groups from the format split, distractors, determinism."""

from __future__ import annotations

import random

from ptwiki_llm.config import ProbesConfig
from ptwiki_llm.data.format import is_eval
from ptwiki_llm.evaluation.probes import (
    MASK,
    build_probes,
    fine_tuning_sentences,
    question_for,
    question_is_safe,
    read_probes,
    spans,
    split_sentences,
    write_probes,
)

EVAL_FRACTION = 0.3
CITIES = ["Lisboa", "Porto", "Coimbra", "Braga", "Faro", "Évora", "Recife", "Natal", "Belém", "Manaus", "Luanda",
          "Maputo", "Salvador", "Curitiba", "Fortaleza", "Aveiro", "Viseu", "Leiria", "Setúbal", "Santarém"]


def _article(page_id: int, city: str) -> dict:
    year = 1500 + (page_id * 37) % 500
    lead = (f"{city} é uma localidade citada em documentos antigos. A povoação foi fundada em {year} por colonos "
            f"vindos de Portugal. Em {city} vivem {1000 + page_id * 13} pessoas segundo o censo.")
    return {"id": page_id, "title": city, "sections": [{"heading": "", "level": 1, "text": lead},
                                                       {"heading": "História", "level": 2, "text": "Texto."}]}


ARTICLES = [_article(1000 + i, city) for i, city in enumerate(CITIES)]


def test_spans_find_years_numbers_and_entities():
    sentence = "A cidade foi fundada em 1755 por 300 colonos vindos de Portugal e da Nova Escócia."
    found = [(sentence[a:b], kind) for a, b, kind in spans(sentence, ["year", "number", "entity"])]
    assert found == [("1755", "year"), ("300", "number"), ("Portugal", "entity"), ("Nova Escócia", "entity")]
    assert spans("Lisboa fica em Portugal desde 1147.", ["year"]) == [(30, 34, "year")]
    assert spans("Portugal é um país.", ["entity"]) == []  # a capital letter opening the sentence says nothing


def test_sentences_split_at_end_punctuation_before_a_capital():
    text = "Primeira frase termina aqui. Segunda frase, em 1990. terceira não começa.\nNova linha."
    assert split_sentences(text) == ["Primeira frase termina aqui.", "Segunda frase, em 1990. terceira não começa.",
                                     "Nova linha."]


def test_probes_are_deterministic_and_independent_of_article_order(tmp_path):
    cfg = ProbesConfig(count=10, heldout_share=0.5, distractors=3)
    first, counts = build_probes(ARTICLES, cfg, seed=7, eval_fraction=EVAL_FRACTION, trained_sentences=None)
    shuffled = list(ARTICLES)
    random.Random(1).shuffle(shuffled)
    again, _ = build_probes(shuffled, cfg, seed=7, eval_fraction=EVAL_FRACTION, trained_sentences=None)
    assert first == again and len(first) == counts["probes"] == 10
    path = write_probes(first, tmp_path / "probes.jsonl")
    assert read_probes(path) == first
    other, _ = build_probes(ARTICLES, cfg, seed=8, eval_fraction=EVAL_FRACTION, trained_sentences=None)
    assert other != first


def test_probe_fields_groups_and_distractors():
    cfg = ProbesConfig(count=20, heldout_share=0.5, distractors=2)
    probes, counts = build_probes(ARTICLES, cfg, seed=3, eval_fraction=EVAL_FRACTION, trained_sentences=None)
    heldout_ids = {a["id"] for a in ARTICLES if is_eval(a["id"], EVAL_FRACTION)}
    assert heldout_ids and counts["probes_heldout"] == len(heldout_ids)  # fewer held-out articles than asked for
    for probe in probes:
        assert probe.group == ("heldout" if probe.article_id in heldout_ids else "train")
        assert probe.sentence[probe.start : probe.end] == probe.gold
        assert probe.masked == probe.sentence.replace(probe.gold, MASK, 1) or probe.sentence.count(probe.gold) > 1
        assert len(probe.distractors) == 2 and probe.gold not in probe.distractors
        assert all(d not in probe.sentence for d in probe.distractors)
        if probe.kind == "year":
            assert all(len(d) == 4 and d.isdigit() for d in probe.distractors)
        if probe.kind == "entity":
            assert all(d in [*CITIES, "Portugal"] for d in probe.distractors)
    assert [p.article_id for p in probes] == sorted(p.article_id for p in probes)


def test_train_group_needs_the_sentence_in_the_fine_tuning_sample():
    seen_article = next(a for a in ARTICLES if not is_eval(a["id"], EVAL_FRACTION))
    training_text = "### Instrução:\nExplique.\n\n### Resposta:\n" + seen_article["sections"][0]["text"]
    trained = fine_tuning_sentences([training_text])
    probes, counts = build_probes(ARTICLES, ProbesConfig(count=20, heldout_share=0.5), seed=1,
                                  eval_fraction=EVAL_FRACTION, trained_sentences=trained)
    train = [p for p in probes if p.group == "train"]
    assert [p.article_id for p in train] == [seen_article["id"]]
    assert counts["train_articles_not_in_sample"] == sum(1 for a in ARTICLES if not is_eval(a["id"], EVAL_FRACTION)) - 1


def _norm(text: str) -> str:
    from ptwiki_llm.evaluation.metrics import normalize_answer

    return normalize_answer(text)


def test_rag_queries_are_questions_that_never_hold_the_source_sentence():
    probes, _ = build_probes(ARTICLES, ProbesConfig(count=20, heldout_share=0.5, distractors=2), seed=3,
                             eval_fraction=EVAL_FRACTION, trained_sentences=None)
    assert probes
    for probe in probes:
        query = probe.question
        assert query != probe.sentence and query != probe.masked
        assert probe.sentence not in query and probe.masked not in query
        assert _norm(probe.sentence) not in _norm(query) and _norm(probe.masked.replace(MASK, " ")) not in _norm(query)
        assert f" {_norm(probe.gold)} " not in f" {_norm(query)} "  # the answer is not in the question
        assert query.endswith("?") and probe.title in query
        words_around = len(_norm(query).split()) - len(_norm(probe.title).split()) - 3  # minus the interrogative
        assert words_around <= (len(probe.sentence.split()) + 1) // 2 + 1


def test_question_for_refuses_a_question_holding_the_answer_or_the_sentence():
    sentence = "Berlim é a capital e a maior cidade da Alemanha, reunificada em 1990 após a queda do muro."
    start = sentence.index("1990")
    question = question_for("Berlim", sentence, start, start + 4, "year")
    assert question is not None and question.startswith("Em que ano — Berlim:") and "1990" not in question
    # the subject of the question is the answer itself: no question
    start = sentence.index("Alemanha")
    assert question_for("Alemanha", sentence, start, start + len("Alemanha"), "entity") is None
    # a sentence of three words: the question keeps one of them, never the masked sentence
    short = "Fundada em 1990."
    question = question_for("X", short, 11, 15, "year")
    assert question == "Em que ano — X: em …?"
    assert question_is_safe("Em que ano — X: Fundada em …?", short, "1990", "Fundada em ____.") is False
