"""Weaviate (v4 client, gRPC): the cluster's shared store.

Connects by URL (REST and gRPC ports, optional API key from an environment variable) or starts an
embedded server from a pre-placed binary. The collection takes self-provided vectors with the
configured HNSW settings; writes are batched with deterministic UUIDs and failed objects are
retried with bounded backoff, then reported; queries are ``near_vector`` and ``hybrid``
(relativeScoreFusion, ``alpha``), both with property filters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from ptwiki_llm.config import HnswConfig, KeywordConfig, StoreConfig, WeaviateConfig
from ptwiki_llm.rag.chunking import Chunk
from ptwiki_llm.rag.stores.base import (
    PROPERTIES,
    CollectionNotFoundError,
    CollectionSpec,
    Filters,
    Hit,
    SchemaMismatchError,
    StoreUnavailableError,
    VectorStore,
    check_filters,
    chunk_from_properties,
    retry_call,
)

_RETURN = list(PROPERTIES)
# BM25 searches the passage text by words; title, url and section are filtered on as whole strings, which FIELD
# tokenization gives (with WORD, an equality filter on "Artigo 4" would match every title holding those words)
_TOKENIZATION = {"text": "word", "title": "field", "url": "field", "section": "field"}


def _property_kind(data_type: str, tokenization: Any) -> str:
    """'int', or 'text/<tokenization>': what a stored property must match."""
    if tokenization is None:
        return data_type
    return f"{data_type}/{getattr(tokenization, 'value', tokenization)}"


def weaviate_url(cfg: WeaviateConfig) -> str | None:
    return cfg.url or os.environ.get(cfg.url_env) or None


def grpc_port(url: str | None, cfg: WeaviateConfig) -> int:
    """The gRPC port: ``?grpc_port=N`` on the URL (the launchers write it there), else rag.store.weaviate.grpc_port."""
    values = parse_qs(urlparse(url or "").query).get("grpc_port")
    if not values:
        return cfg.grpc_port
    try:
        return int(values[0])
    except ValueError:
        raise ValueError(f"Weaviate URL {url!r}: grpc_port={values[0]!r} is not a port number") from None


def auth_failure(exc: BaseException) -> bool:
    """Whether the server refused the credentials (HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED)."""
    from weaviate.exceptions import AuthenticationFailedError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the client wraps transport errors
        seen.add(id(current))
        if isinstance(current, AuthenticationFailedError) or getattr(current, "status_code", None) in (401, 403):
            return True
        text = str(current)
        if any(mark in text for mark in ("UNAUTHENTICATED", "PERMISSION_DENIED", "anonymous access")):
            return True
        current = current.__cause__ or current.__context__
    return False


def vector_score(distance: float, metric: str) -> float:
    """Higher is better: cosine similarity (1 - cosine distance) or the dot product (Weaviate's dot distance is
    its negative)."""
    return -distance if metric == "dot" else 1.0 - distance


def embedded_binary(cfg: WeaviateConfig) -> Path | None:
    """The pre-placed embedded server binary, if any (the client caches it as weaviate-v<ver>-<sha>)."""
    folder = Path(cfg.embedded_binary_dir).expanduser() if cfg.embedded_binary_dir else (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weaviate-embedded")
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(f"weaviate-v{cfg.embedded_version}-*"))
    return found[0] if found else None


def _filters(filters: Filters | None) -> Any:
    from weaviate.classes.query import Filter

    parts = []
    for name, value in sorted(check_filters(filters).items()):
        prop = Filter.by_property(name)
        if isinstance(value, list | tuple | set | frozenset):
            values = sorted(value, key=str)
            if not values:
                raise ValueError(f"filter on {name}: empty list of values")
            parts.append(prop.contains_any(values))
        else:
            parts.append(prop.equal(value))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


class WeaviateStore(VectorStore):
    backend = "weaviate"

    def __init__(self, cfg: WeaviateConfig, store_cfg: StoreConfig, hnsw: HnswConfig, keyword: KeywordConfig,
                 embedded_data_dir: Path | None = None) -> None:
        super().__init__()
        self.cfg, self.store_cfg, self.hnsw, self.keyword = cfg, store_cfg, hnsw, keyword
        self.url = weaviate_url(cfg)
        self.grpc_port = grpc_port(self.url, cfg)
        self.embedded_data_dir = embedded_data_dir
        if not cfg.embedded and not self.url:
            raise StoreUnavailableError(
                f"rag.store.backend is 'weaviate' but no URL is set: set rag.store.weaviate.url or export "
                f"{cfg.url_env}=http://host:8080 (or enable rag.store.weaviate.embedded with a pre-placed binary)"
            )
        self.client = retry_call(self._connect, cfg.connect_retries, 1.0, self._unreachable, permanent=auth_failure)
        self.collection: Any = None

    @property
    def location(self) -> str:
        return self.url or f"embedded weaviate {self.cfg.embedded_version}"

    def _connect(self) -> Any:
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        extra = AdditionalConfig(timeout=Timeout(init=min(self.cfg.timeout_s, 10), query=self.cfg.timeout_s,
                                                 insert=max(self.cfg.timeout_s, 90)))
        if self.cfg.embedded:
            binary = embedded_binary(self.cfg)
            return weaviate.connect_to_embedded(
                version=self.cfg.embedded_version, additional_config=extra,
                binary_path=str(binary.parent) if binary else self.cfg.embedded_binary_dir,
                persistence_data_path=str(self.embedded_data_dir) if self.embedded_data_dir else None,
                environment_variables={"DISABLE_TELEMETRY": "true", "ENABLE_MODULES": ""},
            )
        parsed = urlparse(self.url if "://" in (self.url or "") else f"http://{self.url}")
        secure = parsed.scheme == "https"
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        client = weaviate.connect_to_custom(
            http_host=parsed.hostname or "localhost", http_port=parsed.port or (443 if secure else 8080),
            http_secure=secure, grpc_host=self.cfg.grpc_host or parsed.hostname or "localhost",
            grpc_port=self.grpc_port,
            grpc_secure=secure if self.cfg.grpc_secure is None else self.cfg.grpc_secure,
            auth_credentials=Auth.api_key(key) if key else None, additional_config=extra,
        )
        return client

    def _unreachable(self, exc: Exception) -> Exception:
        if auth_failure(exc):
            key_set = bool(self.cfg.api_key_env and os.environ.get(self.cfg.api_key_env))
            what = ("rejected the API key in" if key_set else "requires an API key: none is set in")
            return StoreUnavailableError(
                f"Weaviate at {self.location} {what} ${self.cfg.api_key_env} ({type(exc).__name__}: "
                f"{str(exc)[:200]}). Export the server's key (a launcher keeps it in <services dir>/weaviate/api.key)."
            )
        grpc = f"{self.cfg.grpc_host or urlparse(self.url or '').hostname}:{self.grpc_port}"
        return StoreUnavailableError(
            f"Weaviate at {self.location} (gRPC {grpc}) is unreachable after {self.cfg.connect_retries} attempts: "
            f"{type(exc).__name__}: {str(exc)[:300]}. Check that the server runs and both ports are reachable "
            f"(no_proxy for internal hosts), and that {self.cfg.api_key_env} holds a valid key if it needs one."
        )

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()

    # --- collections ---
    def exists(self, name: str) -> bool:
        return bool(self.client.collections.exists(name))

    def describe(self, name: str) -> dict[str, Any]:
        if not self.exists(name):
            raise CollectionNotFoundError(f"no collection {name!r} at {self.location}")
        config = self.client.collections.use(name).config.get()
        try:
            found: dict[str, Any] = json.loads(config.description or "{}")
        except json.JSONDecodeError:
            found = {"description": config.description}
        found["properties"] = {p.name: _property_kind(str(p.data_type.value), p.tokenization)
                               for p in config.properties}
        return found

    def _create(self, spec: CollectionSpec) -> None:
        from weaviate.classes.config import Configure, DataType, Property, StopwordsPreset, Tokenization
        from weaviate.classes.config import VectorDistances as D

        from ptwiki_llm.data.features import PORTUGUESE_STOPWORDS

        kinds = {"text": DataType.TEXT, "int": DataType.INT}
        properties = [
            Property(name=name, data_type=kinds[kind], index_searchable=name == "text" if kind == "text" else None,
                     tokenization=Tokenization(_TOKENIZATION[name]) if name in _TOKENIZATION else None)
            for name, kind in PROPERTIES.items()
        ]
        distance = {"cosine": D.COSINE, "dot": D.DOT}[spec.distance]
        stopwords = sorted(PORTUGUESE_STOPWORDS) if self.keyword.stopwords == "portuguese" else None
        self.client.collections.create(
            spec.name,
            description=spec.description(),
            properties=properties,
            vector_config=Configure.Vectors.self_provided(vector_index_config=Configure.VectorIndex.hnsw(
                distance_metric=distance, ef_construction=self.hnsw.ef_construction,
                max_connections=self.hnsw.max_connections, ef=self.hnsw.ef,
            )),
            inverted_index_config=Configure.inverted_index(
                bm25_k1=1.2, bm25_b=0.75, stopwords_preset=StopwordsPreset.NONE, stopwords_additions=stopwords,
            ),
        )

    def open(self, spec: CollectionSpec, create: bool = True) -> None:
        if self.exists(spec.name):
            found = self.describe(spec.name)
            spec.check(found, self.location)
            expected = {name: _property_kind(kind, _TOKENIZATION.get(name)) for name, kind in PROPERTIES.items()}
            if found["properties"] != expected:
                raise SchemaMismatchError(
                    f"collection {spec.name!r} at {self.location} has properties {found['properties']}, "
                    f"expected {expected}. Nothing was written."
                )
        elif not create:
            raise CollectionNotFoundError(
                f"no collection {spec.name!r} at {self.location}: run `ptwiki-llm index` first (or set "
                "rag.store.collection)"
            )
        else:
            self._create(spec)
        self.collection = self.client.collections.use(spec.name)
        self.spec = spec

    def drop(self, name: str) -> None:
        self.client.collections.delete(name)
        if self.spec is not None and self.spec.name == name:
            self.spec, self.collection = None, None

    # --- data ---
    def count(self) -> int:
        self._require_open()
        return int(self.collection.aggregate.over_all(total_count=True).total_count or 0)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        from weaviate.classes.query import Filter

        self._require_open()
        found: set[str] = set()
        unique = sorted(set(ids))
        for start in range(0, len(unique), 1000):
            part = unique[start : start + 1000]
            result = self.collection.query.fetch_objects(filters=Filter.by_id().contains_any(part), limit=len(part),
                                                         return_properties=[])
            found.update(str(o.uuid) for o in result.objects)
        return found

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        from weaviate.classes.query import Filter

        self._require_open()
        if not ids:
            return []
        result = self.collection.query.fetch_objects(filters=Filter.by_id().contains_any(list(set(ids))),
                                                     limit=len(set(ids)), return_properties=_RETURN)
        by_id = {str(o.uuid): chunk_from_properties(str(o.uuid), o.properties) for o in result.objects}
        return [by_id[i] for i in ids if i in by_id]

    def _write(self, items: Sequence[tuple[Chunk, np.ndarray]]) -> Mapping[int, str]:
        """One batch request; an existing UUID is overwritten, so retries never duplicate."""
        from weaviate.classes.data import DataObject

        objects = [DataObject(properties={k: v for k, v in c.properties().items() if v is not None}, uuid=c.id,
                              vector=v.tolist()) for c, v in items]
        result = self.collection.data.insert_many(objects)
        return {int(index): error.message for index, error in (result.errors or {}).items()}

    # --- queries ---
    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        self._require_open()
        result = self.collection.query.near_vector(
            near_vector=np.asarray(vector, dtype=np.float32).tolist(), limit=k, filters=_filters(filters),
            return_metadata=MetadataQuery(distance=True), return_properties=_RETURN,
        )
        metric = self._require_open().distance
        return [Hit(chunk_from_properties(str(o.uuid), o.properties), vector_score(float(o.metadata.distance), metric))
                for o in result.objects]

    def hybrid(self, query: str, vector: np.ndarray, k: int, alpha: float,
               filters: Filters | None = None) -> list[Hit]:
        from weaviate.classes.query import HybridFusion, MetadataQuery

        self._require_open()
        result = self.collection.query.hybrid(
            query=query, vector=np.asarray(vector, dtype=np.float32).tolist(), alpha=alpha,
            query_properties=["text"], fusion_type=HybridFusion.RELATIVE_SCORE, limit=k,
            filters=_filters(filters), return_metadata=MetadataQuery(score=True), return_properties=_RETURN,
        )
        return [Hit(chunk_from_properties(str(o.uuid), o.properties), float(o.metadata.score))
                for o in result.objects]
