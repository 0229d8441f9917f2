"""One contract, every backend: LanceDB, and Weaviate on a real server started for the session (the cases skip,
saying how to build the binary, only where no weaviate-server binary exists; CI builds one)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace

import numpy as np
import pytest

from ptwiki_llm.config import Config, WeaviateConfig
from ptwiki_llm.rag.chunking import Chunk, chunk_id
from ptwiki_llm.rag.stores import (
    CollectionNotFoundError,
    CollectionSpec,
    SchemaMismatchError,
    VectorStore,
)

DIM = 8
TEXTS = [
    "Lisboa é a capital de Portugal e fica na foz do rio Tejo.",
    "O Porto é conhecido pelo vinho e pela ponte Dom Luís.",
    "Brasília foi inaugurada em 1960 como nova capital do Brasil.",
    "O rio Amazonas é o maior rio do mundo em volume de água.",
    "Coimbra tem uma das universidades mais antigas da Europa.",
    "O futebol é o esporte mais popular do Brasil.",
]


def _vector(i: int) -> np.ndarray:
    """Unit vectors: chunk i points at axis i, with a small shared component so distances differ."""
    v = np.full(DIM, 0.05, dtype=np.float32)
    v[i] = 1.0
    return v / np.linalg.norm(v)


def _chunks() -> list[Chunk]:
    out = []
    for i, text in enumerate(TEXTS):
        revision = None if i == 5 else 100 + i
        out.append(Chunk(id=chunk_id(i, revision, 0), article_id=i, revision=revision, title=f"Artigo {i}",
                         url=f"https://pt.wikipedia.org/wiki/A{i}", section="Geografia" if i % 2 else "",
                         position=0, text=text))
    return out


VECTORS = np.stack([_vector(i) for i in range(len(TEXTS))])


def _connect(backend: str, tmp_path) -> VectorStore:
    config = Config(workdir=str(tmp_path / "wd"))
    rag = config.rag
    if backend == "lancedb":
        from ptwiki_llm.rag.stores.lancedb_store import LanceDBStore

        return LanceDBStore(tmp_path / "lancedb", rag.store, rag.hnsw, rag.keyword)
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    return WeaviateStore(WeaviateConfig(), rag.store, rag.hnsw, rag.keyword)  # WEAVIATE_URL/_API_KEY: weaviate_env


@pytest.fixture(params=["lancedb", pytest.param("weaviate", marks=pytest.mark.weaviate)])
def backend(request) -> str:
    if request.param == "weaviate":
        request.getfixturevalue("weaviate_env")
    return request.param


@pytest.fixture
def connect(backend, tmp_path):
    opened: list[VectorStore] = []
    names: list[str] = []

    def _open(spec: CollectionSpec | None = None, create: bool = True) -> VectorStore:
        store = _connect(backend, tmp_path)
        opened.append(store)
        if spec is not None:
            names.append(spec.name)
            store.open(spec, create=create)
        return store

    yield _open
    if opened:
        cleaner = _connect(backend, tmp_path)
        for name in set(names):
            if cleaner.exists(name):
                cleaner.drop(name)
        cleaner.close()
    for store in opened:
        store.close()


@pytest.fixture
def spec() -> CollectionSpec:
    return CollectionSpec(name=f"Contract_{uuid.uuid4().hex[:10]}", dimension=DIM, embedder="test-embedder",
                          chunking="c0ffee00")


@pytest.fixture
def filled(connect, spec) -> VectorStore:
    store = connect(spec)
    assert store.upsert(_chunks(), VECTORS) == len(TEXTS)
    store.finalize()
    return store


def test_collection_is_created_when_absent_and_checked_when_present(connect, spec):
    store = connect(spec)
    assert store.exists(spec.name) and store.count() == 0
    assert store.describe(spec.name)["dimension"] == DIM
    connect(spec)  # same spec: accepted
    for wrong in (CollectionSpec(spec.name, DIM + 1, spec.embedder, chunking=spec.chunking),
                  CollectionSpec(spec.name, DIM, "another-embedder", chunking=spec.chunking),
                  CollectionSpec(spec.name, DIM, spec.embedder, chunking="different")):
        with pytest.raises(SchemaMismatchError, match=spec.name):
            connect(wrong)
    # a reader that does not know the chunking settings is not refused for them
    connect(CollectionSpec(spec.name, DIM, spec.embedder), create=False)


def test_missing_collection_is_an_error_for_readers(connect, spec):
    with pytest.raises(CollectionNotFoundError, match="index"):
        connect(spec, create=False)


def test_upserts_are_idempotent_by_id(filled):
    assert filled.count() == len(TEXTS)
    chunks = _chunks()
    filled.upsert(chunks, VECTORS)
    assert filled.count() == len(TEXTS)
    changed = replace(chunks[0], text="Lisboa, texto revisto.")
    filled.upsert([changed, changed], np.stack([VECTORS[0], VECTORS[0]]))  # duplicate ids in one batch: one object
    assert filled.count() == len(TEXTS)
    assert filled.get([chunks[0].id])[0].text == "Lisboa, texto revisto."
    assert filled.upsert([], np.zeros((0, DIM))) == 0


def test_existing_ids_and_round_trip_of_properties(filled):
    chunks = _chunks()
    missing = str(uuid.uuid4())
    assert filled.existing_ids([chunks[1].id, chunks[5].id, missing]) == {chunks[1].id, chunks[5].id}
    assert filled.existing_ids([]) == set()
    got = filled.get([chunks[5].id, chunks[2].id])
    assert got == [chunks[5], chunks[2]]  # every property back, a missing revision as None


def test_vectors_of_the_wrong_dimension_are_refused_and_nothing_is_written(filled):
    extra = Chunk(chunk_id(99, 1, 0), 99, 1, "X", "u", "", 0, "texto novo")
    with pytest.raises(SchemaMismatchError, match="dimension"):
        filled.upsert([extra], np.ones((1, DIM + 3), dtype=np.float32))
    assert filled.count() == len(TEXTS)
    assert filled.existing_ids([extra.id]) == set()


def test_vector_search_ranks_by_similarity(filled):
    query = _vector(3) * 0.9 + _vector(1) * 0.1
    hits = filled.search(query, k=3)
    assert [h.chunk.article_id for h in hits][:2] == [3, 1]
    assert len(hits) == 3
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and 0.9 < scores[0] <= 1.0 + 1e-5
    assert hits[0].chunk.text == TEXTS[3] and hits[0].chunk.url.endswith("A3")


def test_filters_restrict_both_kinds_of_search(filled):
    query = _vector(3)
    assert {h.chunk.article_id for h in filled.search(query, k=10, filters={"article_id": [0, 2]})} == {0, 2}
    assert [h.chunk.article_id for h in filled.search(query, k=10, filters={"title": "Artigo 4"})] == [4]
    assert {h.chunk.article_id for h in filled.search(query, k=10, filters={"section": "Geografia"})} == {1, 3, 5}
    hybrid = filled.hybrid("capital", query, k=10, alpha=0.5, filters={"article_id": [2, 4, 5]})
    assert {h.chunk.article_id for h in hybrid} <= {2, 4, 5} and hybrid
    with pytest.raises(ValueError, match="filter"):
        filled.search(query, k=3, filters={"text": "x"})


def test_equality_filters_match_whole_strings_not_words(connect, spec):
    store = connect(spec)
    base = _chunks()[:3]
    titled = [replace(base[0], title="Lisboa", section="História"),
              replace(base[1], title="Lisboa Antiga", section="História de Portugal"),
              replace(base[2], title="lisboa", section="")]
    store.upsert(titled, VECTORS[:3])
    store.finalize()
    query = _vector(0)
    assert [h.chunk.title for h in store.search(query, k=10, filters={"title": "Lisboa"})] == ["Lisboa"]
    assert [h.chunk.title for h in store.search(query, k=10, filters={"section": "História"})] == ["Lisboa"]
    assert {h.chunk.title for h in store.search(query, k=10, filters={"title": ["Lisboa Antiga", "lisboa"]})} == {
        "Lisboa Antiga", "lisboa"}
    assert store.search(query, k=10, filters={"url": base[1].url})[0].chunk.title == "Lisboa Antiga"


def test_dot_product_scores_are_the_dot_product(connect):
    spec = CollectionSpec(name=f"Contract_{uuid.uuid4().hex[:10]}", dimension=DIM, embedder="test-embedder",
                          distance="dot")
    store = connect(spec)
    vectors = VECTORS * np.arange(1, len(TEXTS) + 1, dtype=np.float32)[:, None]  # not unit length
    store.upsert(_chunks(), vectors)
    store.finalize()
    query = _vector(3) * 2.0
    hits = store.search(query, k=len(TEXTS))
    expected = {c.id: float(v @ query) for c, v in zip(_chunks(), vectors, strict=True)}
    assert [h.chunk.id for h in hits] == sorted(expected, key=expected.get, reverse=True)
    assert [h.score for h in hits] == pytest.approx([expected[h.chunk.id] for h in hits], rel=1e-4)


def test_hybrid_alpha_moves_between_bm25_and_vector(filled):
    query_vector = _vector(3) * 0.9 + _vector(1) * 0.3 + _vector(0) * 0.1  # Amazonas, then Porto, then Lisboa
    keyword_only = filled.hybrid("universidades Coimbra", query_vector, k=3, alpha=0.0)
    assert keyword_only[0].chunk.article_id == 4  # BM25 alone: the passage with the words
    vector_only = filled.hybrid("universidades Coimbra", query_vector, k=3, alpha=1.0)
    assert [h.chunk.article_id for h in vector_only] == [h.chunk.article_id for h in filled.search(query_vector, 3)]
    mixed = filled.hybrid("universidades Coimbra", query_vector, k=6, alpha=0.5)
    assert {mixed[0].chunk.article_id, mixed[1].chunk.article_id} == {3, 4}  # each list's best gets 0.5
    assert all(a.score >= b.score for a, b in itertools.pairwise(mixed))


def test_drop_removes_the_collection(connect, spec, filled):
    filled.drop(spec.name)
    assert not connect().exists(spec.name)
