"""Vector stores: one interface (:class:`VectorStore`), LanceDB (embedded default) and Weaviate."""

from __future__ import annotations

import re

from ptwiki_llm.config import ChunkingConfig, Config
from ptwiki_llm.provenance import sha256_json
from ptwiki_llm.rag.stores.base import (
    CollectionNotFoundError,
    CollectionSpec,
    Filters,
    Hit,
    SchemaMismatchError,
    StoreError,
    StoreUnavailableError,
    VectorStore,
    WriteError,
)

__all__ = [
    "CollectionNotFoundError", "CollectionSpec", "Filters", "Hit", "SchemaMismatchError", "StoreError",
    "StoreUnavailableError", "VectorStore", "WriteError", "chunking_fingerprint", "collection_name", "open_store",
]


def chunking_fingerprint(cfg: ChunkingConfig) -> str:
    """8 hex of the chunking settings: the same chunk id must always mean the same text."""
    return sha256_json(cfg.model_dump())[:8]


def collection_name(prefix: str, dataset_sha256: str, embedder: str, chunking: str) -> str:
    """``<Prefix>_<12 hex of the corpus hash>_<embedder>_<chunking fingerprint>``: a valid Weaviate class
    and LanceDB table name, so different corpora, embedders or chunkings never share a collection."""
    slug = re.sub(r"[^0-9A-Za-z]+", "_", embedder).strip("_")
    prefix = re.sub(r"[^0-9A-Za-z_]+", "_", prefix) or "Ptwiki"
    return f"{prefix[0].upper()}{prefix[1:]}_{dataset_sha256[:12]}_{slug}_{chunking}"


def open_store(config: Config) -> VectorStore:
    """A connection to the configured backend (no collection bound yet: call ``open(spec)``)."""
    rag = config.rag
    if rag.store.backend == "lancedb":
        from ptwiki_llm.rag.stores.lancedb_store import LanceDBStore

        return LanceDBStore(config.expand(rag.store.lancedb_uri), rag.store, rag.hnsw, rag.keyword,
                            hybrid_candidates=rag.retrieval.hybrid_candidates)
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    return WeaviateStore(rag.store.weaviate, rag.store, rag.hnsw, rag.keyword,
                         embedded_data_dir=config.expand(rag.store.weaviate.embedded_data_dir))
