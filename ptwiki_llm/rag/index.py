"""Articles -> chunks -> embeddings -> store, resumable.

Chunk ids are deterministic, so a run asks the store which ids of each group it already holds and
embeds only the rest: a second run adds nothing, and a run killed mid-way and started again ends
with the same objects (every store write is an upsert by id, so nothing is duplicated either).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.config import RagConfig
from ptwiki_llm.progress import progress_bar
from ptwiki_llm.rag.chunking import Chunk, Chunker, ChunkStats, unique_chunks
from ptwiki_llm.rag.embeddings import Embedder
from ptwiki_llm.rag.stores.base import VectorStore


class IndexCounts(StepArtifact):
    articles: int
    articles_without_chunks: int
    chunks: int
    short_dropped: int
    duplicates_dropped: int
    already_indexed: int
    embedded: int
    written: int
    store_count: int
    quarantined_excluded: int
    store_count_before: int


class RagIndex(StepArtifact):
    """The index step's output: which collection of which store holds the passages, made how."""

    backend: str
    collection: str
    location: str
    embedder: str
    dimension: int
    embedding_precision: str
    embedding_backend: dict[str, Any]
    dataset_sha256: str
    identity: dict[str, Any]
    counts: IndexCounts
    # built by a job array (hpc.steps.index.array_tasks): each task's part, with its key and sha256
    array_parts: list[dict[str, Any]] = Field(default_factory=list)


@dataclass
class IndexReport:
    collection: str
    backend: str
    location: str
    embedder: str
    dimension: int
    articles: int = 0
    articles_without_chunks: int = 0
    chunks: int = 0
    short_dropped: int = 0
    duplicates_dropped: int = 0
    already_indexed: int = 0
    embedded: int = 0
    written: int = 0
    store_count: int = 0
    embedded_chars: int = 0
    elapsed_s: float = 0.0
    embed_s: float = 0.0
    write_s: float = 0.0
    chunks_per_s: float = 0.0
    embedding: dict[str, Any] = field(default_factory=dict)  # Embedder.identity and precision
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_index(
    rows: Iterable[Mapping[str, Any]],
    chunker: Chunker,
    embedder: Embedder,
    store: VectorStore,
    cfg: RagConfig,
    total_articles: int | None = None,
    show_progress: bool = True,
) -> IndexReport:
    """Index ``rows`` into the collection ``store`` has open; returns counts and timings."""
    stats = ChunkStats()
    short_before = chunker.short_dropped

    def embed(group: list[Chunk], todo: list[Chunk]) -> np.ndarray:
        return embedder.embed_passages([c.embedding_text(cfg.chunking.heading_in_embedding) for c in todo])

    articles = (chunks for _, chunks in unique_chunks(rows, chunker, stats))
    report = write_index(articles, embed, new_report(store, embedder), store, cfg, stats, total_articles,
                         show_progress)
    report.short_dropped = chunker.short_dropped - short_before
    return report


def new_report(store: VectorStore, embedder: Embedder) -> IndexReport:
    spec = store._require_open()
    if spec.dimension != embedder.dimension:
        raise ValueError(f"collection {spec.name} holds dimension {spec.dimension}, the embedder gives "
                         f"{embedder.dimension}")
    return IndexReport(collection=spec.name, backend=store.backend, location=store.location,
                       embedder=embedder.name, dimension=embedder.dimension,
                       embedding={**embedder.identity, "precision": embedder.precision})


# (the group being written, the chunks of it the store lacks) -> the vectors of the latter
VectorSource = Callable[[list[Chunk], list[Chunk]], np.ndarray]


def write_index(articles: Iterable[list[Chunk]], vectors: VectorSource, report: IndexReport, store: VectorStore,
                cfg: RagConfig, stats: ChunkStats, total_articles: int | None = None,
                show_progress: bool = True) -> IndexReport:
    """Write each article's (deduplicated) chunks, in groups of ``group_size``, with what ``vectors`` gives for
    the ones the store does not hold yet; fills ``report`` from ``stats`` once ``articles`` is exhausted."""
    group: list[Chunk] = []
    pending_articles = 0
    started = time.perf_counter()
    with progress_bar(f"indexing into {report.collection}", total=total_articles, enabled=show_progress) as advance:

        def flush() -> None:
            nonlocal group, pending_articles
            if group:
                _index_group(group, vectors, store, cfg, report)
            advance(pending_articles)
            group, pending_articles = [], 0

        for chunks in articles:
            group.extend(chunks)
            pending_articles += 1
            if len(group) >= cfg.embedding.group_size:
                flush()
        flush()
    store.finalize()
    report.elapsed_s = time.perf_counter() - started
    report.articles, report.articles_without_chunks = stats.articles, stats.articles_without_chunks
    report.chunks, report.duplicates_dropped = stats.chunks, stats.duplicates_dropped
    report.store_count = store.count()
    report.chunks_per_s = report.embedded / report.elapsed_s if report.elapsed_s else 0.0
    return report


def _index_group(group: list[Chunk], vectors: VectorSource, store: VectorStore, cfg: RagConfig,
                 report: IndexReport) -> None:
    present = store.existing_ids([c.id for c in group])
    todo = [c for c in group if c.id not in present]
    report.already_indexed += len(group) - len(todo)
    t0 = time.perf_counter()
    todo_vectors = vectors(group, todo)  # called for every group: a source may release what it held for it
    if not todo:
        return
    t1 = time.perf_counter()
    report.written += store.upsert(todo, todo_vectors)
    report.write_s += time.perf_counter() - t1
    report.embed_s += t1 - t0
    report.embedded += len(todo)
    report.embedded_chars += sum(len(c.embedding_text(cfg.chunking.heading_in_embedding)) for c in todo)
