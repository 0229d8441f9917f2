"""Embedded default: LanceDB on local disk (a folder in the workdir), no server.

Vector search is exact below ``hnsw.lancedb_min_rows`` rows and uses an IVF_HNSW_SQ index with the
configured graph settings above it. Keyword search is LanceDB's native BM25 full-text index on
``text``, tokenized like Weaviate's ``word`` tokenization (lower-cased words, no stemming, no accent
folding, the same stop-word list), and hybrid search fuses the two lists exactly as Weaviate's
relativeScoreFusion does (:func:`relative_score_fusion`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ptwiki_llm.config import HnswConfig, KeywordConfig, StoreConfig
from ptwiki_llm.rag.chunking import Chunk
from ptwiki_llm.rag.stores.base import (
    PROPERTIES,
    CollectionNotFoundError,
    CollectionSpec,
    Filters,
    Hit,
    SchemaMismatchError,
    VectorStore,
    check_filters,
    chunk_from_properties,
    relative_score_fusion,
)

_META_KEY = b"ptwiki"
_ARROW_TYPES = {"text": pa.string(), "int": pa.int64()}
_COLUMNS = ["id", *PROPERTIES]


def _schema(spec: CollectionSpec) -> pa.Schema:
    fields = [pa.field("id", pa.string(), nullable=False),
              pa.field("vector", pa.list_(pa.float32(), spec.dimension), nullable=False)]
    fields += [pa.field(name, _ARROW_TYPES[kind]) for name, kind in PROPERTIES.items()]
    return pa.schema(fields, metadata={_META_KEY: spec.description().encode()})


def _sql_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"unsupported filter value {value!r}")
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def filter_sql(filters: Filters | None) -> str | None:
    clauses = []
    for name, value in sorted(check_filters(filters).items()):
        if isinstance(value, list | tuple | set | frozenset):
            values = sorted(value, key=str)
            if not values:
                return "false"
            clauses.append(f"{name} IN ({', '.join(_sql_value(v) for v in values)})")
        else:
            clauses.append(f"{name} = {_sql_value(value)}")
    return " AND ".join(clauses) or None


class LanceDBStore(VectorStore):
    backend = "lancedb"

    def __init__(self, uri: str | Path, store_cfg: StoreConfig, hnsw: HnswConfig, keyword: KeywordConfig,
                 hybrid_candidates: int = 100) -> None:
        import lancedb

        super().__init__()
        self.uri = str(uri)
        Path(self.uri).mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(self.uri)
        self.store_cfg, self.hnsw, self.keyword = store_cfg, hnsw, keyword
        self.hybrid_candidates = hybrid_candidates
        self.table: Any = None

    @property
    def location(self) -> str:
        return self.uri

    # --- collections ---
    def _names(self) -> set[str]:
        names: set[str] = set()
        token = None
        while True:
            page = self.db.list_tables(page_token=token)
            names.update(page.tables)
            token = page.page_token
            if not token:
                return names

    def exists(self, name: str) -> bool:
        return name in self._names()

    def describe(self, name: str) -> dict[str, Any]:
        if not self.exists(name):
            raise CollectionNotFoundError(f"no collection {name!r} in {self.uri}")
        schema = self.db.open_table(name).schema
        found: dict[str, Any] = json.loads((schema.metadata or {}).get(_META_KEY, b"{}"))
        vector = schema.field("vector").type if "vector" in schema.names else None
        found["dimension"] = vector.list_size if isinstance(vector, pa.FixedSizeListType) else None
        found["columns"] = [n for n in schema.names]
        return found

    def open(self, spec: CollectionSpec, create: bool = True) -> None:
        if self.exists(spec.name):
            found = self.describe(spec.name)
            spec.check(found, self.uri)
            expected_columns = _schema(spec).names
            if found["columns"] != expected_columns:
                raise SchemaMismatchError(
                    f"collection {spec.name!r} at {self.uri} has columns {found['columns']}, expected "
                    f"{expected_columns}. Nothing was written."
                )
            self.table = self.db.open_table(spec.name)
        elif not create:
            raise CollectionNotFoundError(
                f"no collection {spec.name!r} in {self.uri}: run `ptwiki-llm index` first (or set rag.store.collection)"
            )
        else:
            self.table = self.db.create_table(spec.name, schema=_schema(spec))
        self.spec = spec

    def drop(self, name: str) -> None:
        if self.exists(name):
            self.db.drop_table(name)
        if self.spec is not None and self.spec.name == name:
            self.spec, self.table = None, None

    # --- data ---
    def count(self) -> int:
        self._require_open()
        return int(self.table.count_rows())

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        self._require_open()
        found: set[str] = set()
        unique = sorted(set(ids))
        for start in range(0, len(unique), 1000):
            part = unique[start : start + 1000]
            where = f"id IN ({', '.join(_sql_value(i) for i in part)})"
            found.update(self.table.search().where(where).select(["id"]).limit(len(part)).to_arrow()["id"].to_pylist())
        return found

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        self._require_open()
        if not ids:
            return []
        where = f"id IN ({', '.join(_sql_value(i) for i in sorted(set(ids)))})"
        rows = self.table.search().where(where).select(_COLUMNS).limit(len(ids)).to_arrow().to_pylist()
        by_id = {row["id"]: chunk_from_properties(row["id"], row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _write(self, items: Sequence[tuple[Chunk, np.ndarray]]) -> Mapping[int, str]:
        """One atomic commit (a merge on id, so a retried or repeated write never duplicates)."""
        spec = self._require_open()
        columns: dict[str, list[Any]] = {"id": [c.id for c, _ in items]}
        props = [c.properties() for c, _ in items]
        for name in PROPERTIES:
            columns[name] = [p[name] for p in props]
        flat = np.stack([v for _, v in items]).astype(np.float32).reshape(-1)
        vector = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), spec.dimension)
        schema = _schema(spec)
        arrays = [pa.array(columns["id"], pa.string()), vector]
        arrays += [pa.array(columns[n], _ARROW_TYPES[k]) for n, k in PROPERTIES.items()]
        data = pa.Table.from_arrays(arrays, schema=schema)
        (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data))
        return {}

    def _index_names(self) -> dict[str, str]:
        """column -> index type of the table's indexes."""
        out = {}
        for index in self.table.list_indices():
            for column in index.columns:
                out[column] = str(index.index_type)
        return out

    def finalize(self) -> None:
        """Index ids (BTREE), text (BM25) and, above the size threshold, vectors; fold new rows in."""
        from lancedb.index import BTree, HnswSq

        self._require_open()
        rows = self.count()
        if rows == 0:
            return
        indexes = self._index_names()
        if "id" not in indexes:
            self.table.create_index("id", config=BTree())
        if "text" not in indexes:
            self.table.create_index("text", config=self._fts_config())
        if "vector" not in indexes and rows >= self.hnsw.lancedb_min_rows:
            self.table.create_index("vector", config=HnswSq(
                distance_type=self._require_open().distance, m=self.hnsw.max_connections,
                ef_construction=self.hnsw.ef_construction, num_partitions=1,
            ))
        self.table.optimize()  # compacts small commits and adds unindexed rows to every index

    def _fts_config(self) -> Any:
        from lancedb.index import FTS

        from ptwiki_llm.data.features import PORTUGUESE_STOPWORDS

        stopwords = sorted(PORTUGUESE_STOPWORDS) if self.keyword.stopwords == "portuguese" else []
        return FTS(base_tokenizer="simple", lower_case=True, stem=False, ascii_folding=False,
                   remove_stop_words=bool(stopwords), custom_stop_words=stopwords, max_token_length=40)

    # --- queries ---
    def _vector_hits(self, vector: np.ndarray, limit: int, where: str | None) -> list[Hit]:
        spec = self._require_open()
        query = (self.table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector",
                                   query_type="vector")
                 .distance_type(spec.distance).select([*_COLUMNS, "_distance"]).limit(limit))
        if "vector" in self._index_names():
            query = query.ef(self.hnsw.ef_search)
        if where:
            query = query.where(where, prefilter=True)
        rows = query.to_arrow().to_pylist()
        return [Hit(chunk_from_properties(r["id"], r), 1.0 - float(r["_distance"])) for r in rows]

    def _keyword_hits(self, text: str, limit: int, where: str | None) -> list[Hit]:
        self._require_open()
        if "text" not in self._index_names():
            self.finalize()  # an FTS query needs the index; writers normally build it in finalize()
        query = self.table.search(text, query_type="fts", fts_columns="text")
        query = query.select([*_COLUMNS, "_score"]).limit(limit)
        if where:
            query = query.where(where, prefilter=True)
        rows = query.to_arrow().to_pylist()
        return [Hit(chunk_from_properties(r["id"], r), float(r["_score"])) for r in rows]

    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]:
        return self._vector_hits(vector, k, filter_sql(filters))

    def hybrid(self, query: str, vector: np.ndarray, k: int, alpha: float,
               filters: Filters | None = None) -> list[Hit]:
        where = filter_sql(filters)
        limit = max(k, self.hybrid_candidates)
        vector_hits = self._vector_hits(vector, limit, where) if alpha > 0 else []
        keyword_hits = self._keyword_hits(query, limit, where) if alpha < 1 and query.strip() else []
        return relative_score_fusion(vector_hits, keyword_hits, alpha, k)
