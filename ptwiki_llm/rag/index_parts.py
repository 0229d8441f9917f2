"""Index as the tasks of a SLURM job array: each task embeds one shard of the passages into a part file,
and the index step merges the parts into the store.

The shard of an article is ``blake2b(article id) % tasks``: articles, not passages, are split, because a
passage is made by chunking its article, and the chunking is half of a task's work on a CPU. A task reads
the validated articles in the order the single-process index reads them, chunks the articles of its shard,
embeds every passage and writes them with their vectors and their article's position in that order
(``article_index``) to ``part-<task>-of-<tasks>-<key>.parquet``, then a JSON record with the file's sha256
(both written under a temporary name and renamed, the record last). ``key`` hashes what the part's content
depends on: the index identity (corpus, quarantine, embedder files, prompts, chunking, runtime), the
precision, the article limit and the shard (task, tasks); a task whose part exists with that key and its
recorded sha256 reuses it, so a re-run redoes only the parts that are missing.

The merge reads the parts together in (article_index, position) order, which is the single-process order,
and drops a passage whose text appeared earlier as ``unique_chunks`` does (duplicates in two shards were
embedded twice; the first in input order wins), then writes through the same store writer as the single
process (``write_index``): the same ids, vectors and counts, whatever the number of tasks or the order
they finished in. A part that is missing, or whose content differs from its record, fails the merge with
the task's number and its log.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.config import RagConfig
from ptwiki_llm.errors import UserError
from ptwiki_llm.provenance import sha256_file, sha256_json
from ptwiki_llm.rag.chunking import Chunk, Chunker, ChunkStats, drop_duplicates
from ptwiki_llm.rag.embeddings import Embedder
from ptwiki_llm.rag.index import IndexReport, write_index
from ptwiki_llm.rag.stores.base import VectorStore

SHARD_RULE = "blake2b-8(article id) % tasks"
ORDER = "article_index"  # column: the article's position in the stream the single-process index reads
BATCH_ROWS = 1024


class IndexPartsError(UserError):
    """A part of an index job array is missing or is not what its task recorded."""


def shard_of(article_id: int, tasks: int) -> int:
    """The task that indexes this article: stable across runs, machines and Python processes."""
    digest = hashlib.blake2b(str(int(article_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % tasks


def part_key(identity: Mapping[str, Any], precision: str, max_articles: int | None, task: int, tasks: int) -> str:
    """What one part's content depends on, hashed: its shard of the corpus and how it was embedded."""
    return sha256_json({"identity": dict(identity), "precision": precision, "max_articles": max_articles,
                        "shard_rule": SHARD_RULE, "task": task, "tasks": tasks})[:16]


def part_paths(parts_dir: Path, task: int, tasks: int, key: str) -> tuple[Path, Path]:
    """(parquet, JSON record) of one part."""
    stem = Path(parts_dir) / f"part-{task:05d}-of-{tasks:05d}-{key}"
    return stem.with_suffix(".parquet"), stem.with_suffix(".json")


_CHUNK_FIELDS = ("id", "article_id", "revision", "title", "url", "section", "position", "text")
_PASSAGES = pa.schema([
    pa.field(ORDER, pa.int64()), pa.field("id", pa.string()), pa.field("article_id", pa.int64()),
    pa.field("revision", pa.int64()), pa.field("title", pa.string()), pa.field("url", pa.string()),
    pa.field("section", pa.string()), pa.field("position", pa.int64()), pa.field("text", pa.string()),
])


def part_schema(dimension: int) -> pa.Schema:
    return _PASSAGES.append(pa.field("vector", pa.list_(pa.float32(), dimension)))


def _valid_record(record_path: Path, parquet: Path) -> dict[str, Any] | None:
    if not record_path.is_file() or not parquet.is_file():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    return record if sha256_file(parquet) == record["sha256"] else None


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)  # atomic on one filesystem: a reader sees the old file or the whole new one


def build_part(rows: Iterable[Mapping[str, Any]], chunker: Chunker, embedder: Embedder, cfg: RagConfig,
               parts_dir: Path, task: int, tasks: int, key: str) -> dict[str, Any]:
    """Embed task ``task``'s shard of ``rows`` (the articles in single-process order) into its part; returns
    (and writes) the part's record, or the existing one when the part is already there with this key."""
    if not 0 <= task < tasks:
        raise ValueError(f"task {task} is not one of 0..{tasks - 1}")
    parts_dir = Path(parts_dir)
    parquet, record_path = part_paths(parts_dir, task, tasks, key)
    existing = _valid_record(record_path, parquet)
    if existing is not None:
        return {**existing, "reused": True}
    parts_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = parquet.with_name(f"{parquet.name}.{os.getpid()}.partial")
    writer = pq.ParquetWriter(tmp, part_schema(embedder.dimension))
    pending: list[tuple[int, Chunk]] = []
    counts = {"articles": 0, "chunks": 0}
    embed_s = 0.0
    short_before = chunker.short_dropped

    def flush() -> None:
        nonlocal pending, embed_s
        if not pending:
            return
        t0 = time.perf_counter()
        vectors = embedder.embed_passages([c.embedding_text(cfg.chunking.heading_in_embedding) for _, c in pending])
        embed_s += time.perf_counter() - t0
        columns = {ORDER: [i for i, _ in pending],
                   **{name: [getattr(c, name) for _, c in pending] for name in _CHUNK_FIELDS}}
        table = pa.Table.from_pydict(columns, schema=_PASSAGES)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        writer.write_table(table.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, embedder.dimension)))
        pending = []

    try:
        for index, row in enumerate(rows):
            if shard_of(row["id"], tasks) != task:
                continue
            counts["articles"] += 1
            chunks = chunker.chunk_article(row)
            counts["chunks"] += len(chunks)
            pending.extend((index, chunk) for chunk in chunks)
            if len(pending) >= cfg.embedding.group_size:
                flush()
        flush()
    finally:
        writer.close()
    _replace(tmp, parquet)
    record = {"task": task, "tasks": tasks, "key": key, "shard_rule": SHARD_RULE, **counts,
              "short_dropped": chunker.short_dropped - short_before, "dimension": embedder.dimension,
              "precision": embedder.precision, "sha256": sha256_file(parquet), "file": parquet.name,
              "embed_s": round(embed_s, 3), "elapsed_s": round(time.perf_counter() - started, 3)}
    tmp_record = record_path.with_name(f"{record_path.name}.{os.getpid()}.partial")
    tmp_record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _replace(tmp_record, record_path)
    return {**record, "reused": False}


def part_records(parts_dir: Path, keys: Sequence[str], log_of: Callable[[int], str]) -> list[dict[str, Any]]:
    """The record of each task's part (``keys[t]`` is task t's key), checked against its file; an error names
    every task whose part is missing or changed, with its log."""
    tasks = len(keys)
    records, problems = [], []
    for task, key in enumerate(keys):
        parquet, record_path = part_paths(parts_dir, task, tasks, key)
        if not record_path.is_file() or not parquet.is_file():
            problems.append(f"task {task}: no part {record_path.name} (its log: {log_of(task)})")
            continue
        record = _valid_record(record_path, parquet)
        if record is None:
            problems.append(f"task {task}: {parquet.name} differs from the sha256 its record holds "
                            f"(its log: {log_of(task)})")
            continue
        records.append(record)
    if problems:
        raise IndexPartsError(
            f"index job array: {len(problems)} of {tasks} parts unusable in {parts_dir}: " + "; ".join(problems),
            "re-run the index: the tasks whose parts are there reuse them")
    return records


def _part_rows(parts_dir: Path, record: Mapping[str, Any]) -> Iterator[tuple[int, int, Chunk, np.ndarray]]:
    table = pq.ParquetFile(Path(parts_dir) / record["file"])
    for batch in table.iter_batches(batch_size=BATCH_ROWS):
        vectors = batch.column("vector").values.to_numpy(zero_copy_only=False).reshape(-1, record["dimension"])
        columns = batch.to_pydict()
        for i in range(batch.num_rows):
            chunk = Chunk(**{name: columns[name][i] for name in _CHUNK_FIELDS})
            yield columns[ORDER][i], chunk.position, chunk, vectors[i]


def merged_articles(parts_dir: Path, records: Sequence[Mapping[str, Any]]) -> Iterator[
        tuple[dict[str, np.ndarray], list[Chunk]]]:
    """(vectors by chunk id, chunks) per article that has chunks, in single-process order, from all parts."""
    streams = [_part_rows(parts_dir, record) for record in sorted(records, key=lambda r: r["task"])]
    current: int | None = None
    vectors: dict[str, np.ndarray] = {}
    chunks: list[Chunk] = []
    for index, _, chunk, vector in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        if index != current and chunks:
            yield vectors, chunks
            vectors, chunks = {}, []
        current = index
        vectors[chunk.id] = vector
        chunks.append(chunk)
    if chunks:
        yield vectors, chunks


def merge_parts(parts_dir: Path, records: Sequence[Mapping[str, Any]], report: IndexReport, store: VectorStore,
                cfg: RagConfig, total_articles: int | None = None, show_progress: bool = True) -> IndexReport:
    """Write the parts' passages and vectors into the collection ``store`` has open, as ``build_index`` would
    have: duplicates dropped in input order, the store's existing ids kept, the same counts."""
    stats = ChunkStats()
    held: dict[str, np.ndarray] = {}  # the vectors of the articles handed to the writer and not yet written

    def kept_articles() -> Iterator[list[Chunk]]:
        for vectors, kept in drop_duplicates(merged_articles(parts_dir, records), stats):
            held.update((chunk.id, vectors[chunk.id]) for chunk in kept)
            yield kept

    def vectors_of(group: list[Chunk], todo: list[Chunk]) -> np.ndarray:
        found = np.stack([held[chunk.id] for chunk in todo]) if todo else np.zeros((0, report.dimension), np.float32)
        for chunk in group:
            held.pop(chunk.id, None)
        return found

    write_index(kept_articles(), vectors_of, report, store, cfg, stats, total_articles, show_progress)
    articles = sum(int(r["articles"]) for r in records)
    report.articles_without_chunks += articles - report.articles  # articles no piece of which was kept
    report.articles = articles
    report.short_dropped = sum(int(r["short_dropped"]) for r in records)
    report.extra["array_parts"] = parts_provenance(records)
    report.extra["parts_embed_s"] = round(sum(float(r["embed_s"]) for r in records), 3)
    return report


def parts_provenance(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the index records of each part: enough to find the file and check it is the one merged."""
    return [{key: record[key] for key in ("task", "tasks", "key", "file", "sha256", "articles", "chunks")}
            for record in sorted(records, key=lambda r: r["task"])]
