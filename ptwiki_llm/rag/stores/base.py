"""The vector-store interface every backend implements, and the pieces they share.

One collection holds the chunks of one corpus embedded by one model. Properties (besides the
vector): text, title, url, section, article_id, revision, position. Scores are "higher is better":
for vector search 1 - distance (the cosine similarity for cosine distance), for hybrid search the
relative-score fusion of the vector and BM25 scores (Weaviate's default fusion, reproduced for
LanceDB in :func:`relative_score_fusion`).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ptwiki_llm.config import StoreConfig
from ptwiki_llm.errors import PrerequisiteMissingError, ServiceUnavailableError
from ptwiki_llm.rag.chunking import Chunk

# name -> kind; the order is the schema order everywhere.
PROPERTIES: dict[str, str] = {
    "text": "text",
    "title": "text",
    "url": "text",
    "section": "text",
    "article_id": "int",
    "revision": "int",
    "position": "int",
}
FILTERABLE = frozenset(PROPERTIES) - {"text"}
SCHEMA_VERSION = 1

# property -> value (equality) or a list/tuple/set of values (any of them)
Filters = Mapping[str, Any]


class StoreError(RuntimeError):
    pass


class StoreUnavailableError(ServiceUnavailableError, StoreError):
    """The store could not be reached (after bounded retries)."""


class SchemaMismatchError(StoreError):
    """An existing collection does not match what this run would write."""


class CollectionNotFoundError(PrerequisiteMissingError, StoreError):
    pass


class WriteError(StoreError):
    """Objects still failing after the bounded retries; nothing is dropped silently."""


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    dimension: int
    embedder: str
    distance: str = "cosine"
    chunking: str | None = None  # fingerprint of the chunking settings; None (readers) = not checked
    embedding: str | None = None  # fingerprint of a non-torch embedding runtime (Embedder.identity); None = torch
    identity: str | None = None  # fingerprint of everything the collection holds (rag/identity.py); None = not checked

    def description(self) -> str:
        """Stored with the collection so a later run can check it writes the same kind of vectors."""
        return json.dumps({"ptwiki_schema": SCHEMA_VERSION, "dimension": self.dimension,
                           "embedder": self.embedder, "distance": self.distance, "chunking": self.chunking,
                           "embedding": self.embedding, "identity": self.identity}, sort_keys=True)

    def check(self, found: Mapping[str, Any], where: str) -> None:
        """Raise SchemaMismatchError listing every difference between ``found`` and this spec."""
        expected = {k: v for k, v in json.loads(self.description()).items() if v is not None}
        diffs = [f"{key}: collection has {found.get(key)!r}, this run needs {value!r}"
                 for key, value in expected.items() if found.get(key) != value]
        if diffs:
            raise SchemaMismatchError(
                f"collection {self.name!r} at {where} does not match: {'; '.join(diffs)}. "
                "Nothing was written. Index into a new collection (rag.store.collection) or drop this one."
            )


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


def chunk_from_properties(uid: str, props: Mapping[str, Any]) -> Chunk:
    revision = props.get("revision")
    return Chunk(
        id=str(uid), article_id=int(props["article_id"]), revision=None if revision is None else int(revision),
        title=props.get("title") or "", url=props.get("url") or "", section=props.get("section") or "",
        position=int(props.get("position") or 0), text=props.get("text") or "",
    )


def check_filters(filters: Filters | None) -> dict[str, Any]:
    unknown = sorted(set(filters or {}) - FILTERABLE)
    if unknown:
        raise ValueError(f"cannot filter on {unknown}: filterable properties are {sorted(FILTERABLE)}")
    return dict(filters or {})


def check_vectors(chunks: Sequence[Chunk], vectors: np.ndarray, dimension: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        raise ValueError(f"expected {len(chunks)} vectors, got an array of shape {vectors.shape}")
    if vectors.shape[1] != dimension:
        raise SchemaMismatchError(
            f"vectors have dimension {vectors.shape[1]} but the collection holds dimension {dimension}; "
            "nothing was written"
        )
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values; nothing was written")
    return vectors


def dedupe_last(chunks: Sequence[Chunk], vectors: np.ndarray) -> tuple[list[Chunk], np.ndarray]:
    """One object per id (the last wins, as a repeated upsert would)."""
    last = {chunk.id: i for i, chunk in enumerate(chunks)}
    if len(last) == len(chunks):
        return list(chunks), vectors
    keep = sorted(last.values())
    return [chunks[i] for i in keep], vectors[keep]


T = TypeVar("T")


def write_with_retries(
    items: Sequence[T],
    write: Callable[[Sequence[T]], Mapping[int, str]],
    max_retries: int,
    backoff_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    max_backoff_s: float = 8.0,
) -> int:
    """Write ``items``; ``write`` returns {index in the given list: error} for the ones that failed.

    Failed items (or all of them, when ``write`` raises) are retried with doubling delay; what still
    fails after ``max_retries`` retries raises WriteError naming them. Returns the number written.
    """
    pending = list(items)
    errors: dict[int, str] = {}
    for attempt in range(max_retries + 1):
        if attempt:
            sleep(min(backoff_s * 2 ** (attempt - 1), max_backoff_s))
        try:
            errors = dict(write(pending))
        except Exception as exc:  # transport errors: the whole request is retried
            errors = dict.fromkeys(range(len(pending)), f"{type(exc).__name__}: {exc}")
        if not errors:
            return len(items)
        pending = [pending[i] for i in sorted(errors)]
        errors = {new: errors[old] for new, old in enumerate(sorted(errors))}
    sample = "; ".join(f"{_describe(pending[i])}: {msg}" for i, msg in list(errors.items())[:5])
    raise WriteError(f"{len(pending)} of {len(items)} objects could not be written to {what} after "
                     f"{max_retries} retries (first: {sample})")


def _describe(item: Any) -> str:
    chunk = item[0] if isinstance(item, tuple) else item
    return getattr(chunk, "id", repr(chunk)[:60])


def retry_call(fn: Callable[[], T], attempts: int, backoff_s: float, on_fail: Callable[[Exception], Exception],
               sleep: Callable[[float], None] = time.sleep,
               permanent: Callable[[Exception], bool] = lambda exc: False) -> T:
    """``fn()`` up to ``attempts`` times with doubling delay; then raise ``on_fail(last error)``. An error
    ``permanent`` calls so (a rejected credential) is not retried."""
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(min(backoff_s * 2 ** (attempt - 1), 8.0))
        try:
            return fn()
        except Exception as exc:
            last = exc
            if permanent(exc):
                break
    assert last is not None
    raise on_fail(last) from last


def relative_score_fusion(
    vector_hits: Sequence[Hit], keyword_hits: Sequence[Hit], alpha: float, k: int
) -> list[Hit]:
    """Weaviate's relativeScoreFusion: min-max normalize each result list to [0, 1], weight the vector
    list by ``alpha`` and the keyword list by ``1 - alpha``, sum per object, sort (ties: the higher
    original score, then the id).

    As in Weaviate, a list whose scores are all equal contributes its full weight to each member,
    and an object missing from a list gets nothing from it.
    """
    fused: dict[str, list[Any]] = {}
    for hits, weight in ((vector_hits, alpha), (keyword_hits, 1.0 - alpha)):
        if not hits:
            continue
        scores = [h.score for h in hits]
        low, high = min(scores), max(scores)
        for hit in hits:
            part = weight * ((hit.score - low) / (high - low) if high != low else 1.0)
            entry = fused.setdefault(hit.chunk.id, [hit.chunk, 0.0, hit.score])
            entry[1] += part
            entry[2] = max(entry[2], hit.score)
    ranked = sorted(fused.values(), key=lambda e: (-e[1], -e[2], e[0].id))
    return [Hit(chunk=chunk, score=float(score)) for chunk, score, _ in ranked[:k]]


class VectorStore(ABC):
    """A connection to one backend; ``open`` binds it to one collection."""

    backend: str = ""
    store_cfg: StoreConfig

    def __init__(self) -> None:
        self.spec: CollectionSpec | None = None

    # --- lifecycle ---
    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives (a path or URL), for messages and lineage."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def open(self, spec: CollectionSpec, create: bool = True) -> None:
        """Use collection ``spec.name``: create it when absent (unless ``create`` is False, then
        CollectionNotFoundError), check it when present (SchemaMismatchError on any difference)."""

    @abstractmethod
    def describe(self, name: str) -> dict[str, Any]:
        """The stored spec of an existing collection (dimension, embedder, distance, ptwiki_schema)."""

    @abstractmethod
    def drop(self, name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- data ---
    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        """Insert or overwrite by id; returns the number of objects written; WriteError when some
        still fail after retries."""
        spec = self._require_open()
        if not chunks:
            return 0
        vectors = check_vectors(chunks, vectors, spec.dimension)
        chunks, vectors = dedupe_last(chunks, vectors)
        batch = self.store_cfg.write_batch_size
        written = 0
        for start in range(0, len(chunks), batch):
            items = list(zip(chunks[start : start + batch], vectors[start : start + batch], strict=True))
            written += write_with_retries(items, self._write, self.store_cfg.max_retries,
                                          self.store_cfg.retry_backoff_s,
                                          f"{self.backend} collection {spec.name} at {self.location}")
        return written

    @abstractmethod
    def _write(self, items: Sequence[tuple[Chunk, np.ndarray]]) -> Mapping[int, str]:
        """Write one batch; returns the positions in ``items`` that failed, with the reason."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Chunk]: ...

    def finalize(self) -> None:  # noqa: B027 - optional hook
        """Bring indexes up to date after bulk writes (no-op where the backend indexes on write)."""

    # --- queries ---
    @abstractmethod
    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]: ...

    @abstractmethod
    def hybrid(self, query: str, vector: np.ndarray, k: int, alpha: float,
               filters: Filters | None = None) -> list[Hit]: ...

    def _require_open(self) -> CollectionSpec:
        if self.spec is None:
            raise StoreError(f"{self.backend} store: open(spec) a collection first")
        return self.spec
