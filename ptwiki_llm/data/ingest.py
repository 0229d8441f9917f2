"""Ingest: any supported input -> parquet shards of clean articles + a manifest.

Reading is sequential and streamed; cleaning runs in worker processes; results are written in input
order, so the same input and config always give byte-identical shards. Every record read is either
kept or skipped with a reason, and the manifest's counts add up (read = kept + sum(skipped)). Skipped
records are streamed to ``skipped.parquet`` in batches, so a dump with millions of them keeps memory flat.

Where one node is not enough, the cleaning runs as the tasks of a SLURM job array
(``ptwiki_llm.data.ingest_tasks``): the orchestrator sets ``TASKS_DIR_ENV`` for the ingest step, which then
merges the tasks' outputs in input order instead of reading the input, into the same shards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm import __version__
from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.config import IngestConfig
from ptwiki_llm.data.article import ARTICLE_SCHEMA, SKIPPED_SCHEMA, Article, Skipped
from ptwiki_llm.data.detect import detect_source
from ptwiki_llm.data.parallel import ordered_map, resolve_workers
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord, Source
from ptwiki_llm.progress import progress_bar
from ptwiki_llm.provenance import git_commit, sha256_file

MANIFEST_NAME = "manifest.json"
ARTICLE_COLUMNS = ["id", "revision", "title", "url", "text", "sections"]
SKIPPED_NAME = "skipped.parquet"
SKIP_BATCH_ROWS = 4096  # skipped rows held before they go to disk
# set (by the SLURM orchestrator) to the folder of a job array's task outputs: ingest merges them
TASKS_DIR_ENV = "PTWIKI_INGEST_TASKS_DIR"


class IngestCounts(StepArtifact):
    """Every record read is kept or skipped with a reason: read = kept + sum(skipped)."""

    read: int
    kept: int
    skipped: dict[str, int]


class IngestResult(StepArtifact):
    """The ingest step's output: the parquet shards' folder (with manifest.json) and what was kept."""

    dir: str
    dataset_sha256: str
    counts: IngestCounts
    manifest_sha256: str

    @property
    def manifest_path(self) -> Path:
        return Path(self.dir) / MANIFEST_NAME


@dataclass(frozen=True)
class IngestRun:
    """What one ingest call wrote: the folder and its manifest (the whole document)."""

    out_dir: Path
    manifest: dict[str, Any]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def shards(self) -> list[Path]:
        return [self.out_dir / shard["path"] for shard in self.manifest["shards"]]


class _ShardWriter:
    """Writes articles into numbered parquet shards of at most ``shard_size`` rows and about ``shard_max_chars``
    characters of text: the byte bound keeps memory flat when articles are long (a country, a list)."""

    def __init__(self, folder: Path, shard_size: int, shard_max_chars: int) -> None:
        self.folder = folder
        self.shard_size = shard_size
        self.shard_max_chars = shard_max_chars
        self.rows: list[dict[str, Any]] = []
        self.chars = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, article: Article) -> None:
        self.add_row(article.to_row())

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.chars += len(row["text"])
        if len(self.rows) >= self.shard_size or self.chars >= self.shard_max_chars:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"part-{len(self.shards):05d}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=ARTICLE_SCHEMA)
        path = self.folder / name
        pq.write_table(table, path, compression="zstd")
        self.shards.append({"path": name, "rows": len(self.rows), "sha256": sha256_file(path)})
        self.rows = []
        self.chars = 0


class SkipWriter:
    """Streams skipped records into a parquet file, ``batch_rows`` at a time (never the whole list)."""

    def __init__(self, path: Path, batch_rows: int | None = None) -> None:
        self.batch_rows = batch_rows or SKIP_BATCH_ROWS
        self.rows: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(path, SKIPPED_SCHEMA)

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=SKIPPED_SCHEMA))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()


def _limited(records: Iterator[RawRecord], limit: int | None) -> Iterator[RawRecord]:
    return islice(records, limit) if limit else records


def ingest(
    input_path: Path,
    out_dir: Path,
    options: ConvertOptions,
    cfg: IngestConfig,
    max_articles: int | None = None,
    show_progress: bool = True,
) -> IngestRun:
    """Read ``input_path`` (format detected), write shards and manifest into ``out_dir``.

    The output is assembled in a temporary sibling folder and moved into place only when complete,
    so an interrupted run never leaves a half-written corpus that looks finished.
    """
    started = time.perf_counter()
    source: Source = detect_source(Path(input_path))
    workers = resolve_workers(cfg.workers)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    writer = _ShardWriter(staging, cfg.shard_size, cfg.shard_max_chars)
    skips = SkipWriter(staging / SKIPPED_NAME)
    skipped = Counter[str]()
    read = kept = 0
    tasks_dir = os.environ.get(TASKS_DIR_ENV)
    if tasks_dir:  # the cleaning ran as a SLURM job array: merge its tasks' outputs in input order
        from ptwiki_llm.data.ingest_tasks import merged_results

        results: Iterable[tuple[str, dict[str, Any]]] = merged_results(Path(tasks_dir), source, options, max_articles)
        workers = 0
    else:
        convert = partial(source.convert, options=options)
        records = _limited(source.records(), max_articles)
        results = as_rows(ordered_map(convert, records, workers=workers, batch_size=cfg.batch_size))
    try:
        with progress_bar(f"ingest {source.kind}", total=max_articles, enabled=show_progress) as advance:
            for kind, row in results:
                read += 1
                if kind == "skipped":
                    skipped[row["reason"]] += 1
                    skips.add_row(row)
                else:
                    kept += 1
                    writer.add_row(row)
                advance(1)
        writer.flush()
    finally:
        skips.close()

    inputs = [{"path": str(p.resolve()), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in source.files()]
    elapsed = time.perf_counter() - started
    input_bytes = sum(item["size"] for item in inputs)
    manifest: dict[str, Any] = {
        "source_kind": source.kind,
        "inputs": inputs,
        "counts": {"read": read, "kept": kept, "skipped": dict(sorted(skipped.items()))},
        "shards": writer.shards,
        "skipped_path": SKIPPED_NAME,
        # Over shard content only, so it names the data itself, whatever produced it.
        "dataset_sha256": _dataset_digest(writer.shards),
        "max_articles": max_articles,
        "options": {"wiki_base_url": options.wiki_base_url, "max_article_bytes": options.max_article_bytes,
                    "min_text_chars": options.min_text_chars},
        "workers": workers,
        "array_tasks": _array_tasks(tasks_dir),
        "elapsed_s": round(elapsed, 3),
        "articles_per_s": round(read / elapsed, 2) if elapsed else None,
        "input_mb_per_s": round(input_bytes / 1e6 / elapsed, 3) if elapsed else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ptwiki_llm_version": __version__,
        "git_commit": git_commit(),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return IngestRun(out_dir=out_dir, manifest=manifest)


def as_rows(results: Iterable[Article | Skipped]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("article" | "skipped", row) for each converted record, in order."""
    for result in results:
        yield ("skipped" if isinstance(result, Skipped) else "article"), result.to_row()


def _array_tasks(tasks_dir: str | None) -> int | None:
    if not tasks_dir:
        return None
    from ptwiki_llm.data.ingest_tasks import task_count

    return task_count(Path(tasks_dir))


def _dataset_digest(shards: list[dict[str, Any]]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard['path']}:{shard['sha256']}\n".encode())
    return digest.hexdigest()


def load_manifest(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / MANIFEST_NAME).read_text())


def iter_articles(shards: Sequence[Path], exclude_ids: set[int] | frozenset[int] = frozenset(),
                  limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Article rows in shard order, quarantined ids left out, at most ``limit`` of them."""
    emitted = 0
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=256, columns=ARTICLE_COLUMNS):
            for row in batch.to_pylist():
                if row["id"] in exclude_ids:
                    continue
                if limit is not None and emitted >= limit:
                    return
                emitted += 1
                yield row


def shard_paths(out_dir: Path) -> list[Path]:
    manifest = load_manifest(out_dir)
    return [Path(out_dir) / shard["path"] for shard in manifest["shards"]]
