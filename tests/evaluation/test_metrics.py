"""SQuAD metrics with the Portuguese normalisation, on cases computed by hand."""

from __future__ import annotations

import pytest

from ptwiki_llm.evaluation.metrics import answer_in_texts, exact_match, normalize_answer, token_f1


@pytest.mark.parametrize(("text", "normalized"), [
    ("O Rio de Janeiro!", "rio de janeiro"),  # article and punctuation removed, case folded
    ("Uma cidade, um país e as ilhas.", "cidade país e ilhas"),
    ("Está   na «Bahia»", "está na bahia"),  # accents kept; Portuguese quotes are punctuation
    ("A capital [1] é Lisboa [2, 3].", "capital é lisboa"),  # citation markers of RAG answers
    ("1.234,5 km²", "1234,5 km²"),  # thousands dot deleted, decimal comma kept
    ("ao", "ao"),  # contractions are words, not articles
    ("pós-graduação", "pósgraduação"),  # punctuation deleted, not spaced (SQuAD's remove_punc)
    ("d'água", "dágua"),
    ("1.000", "1000"), ("1 000 alunos", "1000 alunos"), ("R$ 2.500,00", "r 2500,00"),  # Portuguese thousands
    ("3,5", "3,5"), ("35", "35"),  # a decimal comma never turns 3,5 into 35
])
def test_normalisation(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_takes_any_gold():
    assert exact_match("a Capital.", ["Lisboa", "capital"]) == 1.0
    assert exact_match("a capital", ["Lisboa"]) == 0.0
    assert exact_match("esta", ["está"]) == 0.0  # accents are kept


def test_token_f1_hand_computed():
    # prediction [rio, tejo, grande], gold [rio, tejo]: precision 2/3, recall 1 -> F1 = 2 * 2/3 / (5/3) = 0.8
    assert token_f1("rio Tejo grande", ["o rio Tejo"]) == pytest.approx(0.8)
    # repeated tokens count once per occurrence: [de, de, x] vs [de, y]: common 1, P 1/3, R 1/2 -> 0.4
    assert token_f1("de de x", ["de y"]) == pytest.approx(0.4)
    # the best gold wins
    assert token_f1("rio Tejo grande", ["Lisboa", "rio Tejo grande"]) == 1.0
    assert token_f1("nada", ["Lisboa"]) == 0.0


def test_token_f1_empty_sides():
    assert token_f1("o", ["a"]) == 1.0  # both normalise to nothing (SQuAD convention)
    assert token_f1("Lisboa", ["os"]) == 0.0
    assert token_f1("Lisboa", []) == 0.0


def test_answer_in_sources_matches_whole_words():
    texts = ["A cidade do Rio de Janeiro fica no Brasil.", "Outro texto."]
    assert answer_in_texts(["rio de janeiro"], texts) == 1.0
    assert answer_in_texts(["Rio"], ["O Riozinho é pequeno."]) == 0.0
    assert answer_in_texts(["o"], texts) == 0.0  # an answer of articles alone matches nothing


def test_portuguese_numbers_match_across_writings():
    assert exact_match("1000", ["1.000"]) == 1.0 and exact_match("mil e 1.000", ["mil e 1000"]) == 1.0
    assert exact_match("3,5", ["35"]) == 0.0
    assert token_f1("cerca de 2.000 alunos", ["2000 alunos"]) == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))


def test_sentence_in_texts_needs_the_whole_sentence():
    from ptwiki_llm.evaluation.metrics import sentence_in_texts

    sentence = "Lisboa é a capital de Portugal."
    assert sentence_in_texts(sentence, ["Intro. Lisboa é a capital  de Portugal. Fim."]) == 1.0
    assert sentence_in_texts(sentence, ["Lisboa é a capital", "de Portugal."]) == 0.0
