"""Top-k passages for a question: vector or hybrid search over an indexed collection."""

from __future__ import annotations

from ptwiki_llm.config import Config, RetrievalConfig
from ptwiki_llm.rag.embeddings import Embedder, load_embedder
from ptwiki_llm.rag.stores import CollectionSpec, Filters, Hit, VectorStore, open_store


class Retriever:
    def __init__(self, store: VectorStore, embedder: Embedder, cfg: RetrievalConfig) -> None:
        self.store, self.embedder, self.cfg = store, embedder, cfg

    def retrieve(self, question: str, k: int | None = None, mode: str | None = None, alpha: float | None = None,
                 filters: Filters | None = None) -> list[Hit]:
        question = question.strip()
        if not question:
            raise ValueError("empty question")
        k = k or self.cfg.k
        mode = mode or self.cfg.mode
        vector = self.embedder.embed_query(question)
        if mode == "vector":
            return self.store.search(vector, k, filters)
        if mode == "hybrid":
            return self.store.hybrid(question, vector, k, self.cfg.alpha if alpha is None else alpha, filters)
        raise ValueError(f"unknown retrieval mode {mode!r}: expected 'vector' or 'hybrid'")

    def close(self) -> None:
        self.store.close()


def open_retriever(config: Config, collection: str, embedder: Embedder | None = None) -> Retriever:
    """A retriever over an existing collection; refuses one written by another embedder or dimension."""
    embedder = embedder or load_embedder(config)
    store = open_store(config)
    try:
        store.open(CollectionSpec(name=collection, dimension=embedder.dimension, embedder=embedder.name,
                                  distance=config.rag.hnsw.distance), create=False)
    except BaseException:
        store.close()
        raise
    return Retriever(store, embedder, config.rag.retrieval)
