"""The embedder: E5 prompts, unit-length float32 vectors, and bf16 autocast that keeps the float32 geometry."""

from __future__ import annotations

import numpy as np
import pytest

from ptwiki_llm.config import EmbeddingConfig
from ptwiki_llm.rag.embeddings import Embedder

PASSAGES = [
    "Lisboa — Geografia\nLisboa é a capital de Portugal e situa-se na margem norte do estuário do Tejo.",
    "Berlim\nBerlim é a capital e o estado mais populoso da Alemanha.",
    "Fotossíntese\nA fotossíntese é o processo pelo qual as plantas convertem luz em energia química.",
    "Copa do Mundo FIFA de 1970\nO Brasil venceu a Copa do Mundo de 1970, no México.",
]


@pytest.fixture(scope="module")
def pair(e5_dir) -> tuple[Embedder, Embedder]:
    make = lambda setting: Embedder(e5_dir, "e5", EmbeddingConfig(device="cpu", bf16_autocast=setting))  # noqa: E731
    return make(False), make(True)


def test_precision_is_recorded(pair):
    full, half = pair
    assert (full.precision, half.precision) == ("float32", "bf16-autocast")


def test_bf16_autocast_vectors_are_unit_float32_and_close_to_float32(pair):
    full, half = pair
    a, b = full.embed_passages(PASSAGES), half.embed_passages(PASSAGES)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (4, full.dimension)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.999


def test_bf16_autocast_retrieves_like_float32(pair):
    questions = ["Qual é a capital de Portugal?", "Quem ganhou a Copa de 1970?", "Como as plantas produzem energia?"]
    ranks = []
    for embedder in pair:
        scores = embedder.embed_queries(questions) @ embedder.embed_passages(PASSAGES).T
        ranks.append(scores.argmax(axis=1).tolist())
    assert ranks[0] == ranks[1] == [0, 3, 2]


def test_no_texts_gives_an_empty_matrix(pair):
    assert pair[1].embed_passages([]).shape == (0, pair[1].dimension)
