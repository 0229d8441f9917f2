"""Ingest as the tasks of a SLURM job array, and the merge of their outputs into one corpus.

Task ``t`` of ``n`` reads the whole input (records are a stream, so every task decompresses and parses
it) and cleans only the records whose index ``i`` has ``i % n == t``: the cleaning, the costly part,
is split ``n`` ways. It writes its articles and its skipped records, each row with the record's index,
to two parquet files, then a JSON record of what it did: the input's identity, the options, its counts
and the sha256 of both files. The ingest step merges the ``n`` outputs by record index, which is the
order a single ingest writes in, so the shards, and with them the manifest's ``dataset_sha256``, are
byte-identical to a run without the array. Before reading a task's files the merge checks their sha256
against the task's record, and that every task read the same input with the same options.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.config import IngestConfig
from ptwiki_llm.data.article import ARTICLE_SCHEMA, SKIPPED_SCHEMA
from ptwiki_llm.data.detect import detect_source
from ptwiki_llm.data.errors import IngestError
from ptwiki_llm.data.parallel import ordered_map, resolve_workers
from ptwiki_llm.data.sources.base import ConvertOptions, Source
from ptwiki_llm.provenance import file_fingerprint, sha256_file

INDEX = "record_index"  # column of a task's files: the record's position in the input
BATCH_ROWS = 1024


def _with_index(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(INDEX, pa.int64()))


def task_files(tasks_dir: Path, task: int) -> tuple[Path, Path, Path]:
    """(articles parquet, skipped parquet, JSON record) of one task."""
    stem = Path(tasks_dir) / f"task-{task:05d}"
    return stem.with_suffix(".articles.parquet"), stem.with_suffix(".skipped.parquet"), stem.with_suffix(".json")


def _identity(source: Source, options: ConvertOptions, max_articles: int | None) -> dict[str, Any]:
    return {"input": [file_fingerprint(p) for p in source.files()], "max_articles": max_articles,
            "options": [options.wiki_base_url, options.max_article_bytes, options.min_text_chars]}


class _RowWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows: list[dict[str, Any]] = []
        self.writer = pq.ParquetWriter(path, schema)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def run_task(input_path: Path, tasks_dir: Path, options: ConvertOptions, cfg: IngestConfig,
             max_articles: int | None, task: int, tasks: int) -> dict[str, Any]:
    """Clean this task's share of the input into ``tasks_dir``; returns (and writes) the task's record."""
    from ptwiki_llm.data.ingest import as_rows

    if not 0 <= task < tasks:
        raise ValueError(f"task {task} is not one of 0..{tasks - 1}")
    source = detect_source(Path(input_path))
    tasks_dir = Path(tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    articles_path, skipped_path, record_path = task_files(tasks_dir, task)
    record_path.unlink(missing_ok=True)  # a record exists only for complete files
    records = source.records()
    if max_articles:
        records = islice(records, max_articles)
    mine = (record for index, record in enumerate(records) if index % tasks == task)
    convert = partial(source.convert, options=options)
    results = as_rows(ordered_map(convert, mine, workers=resolve_workers(cfg.workers), batch_size=cfg.batch_size))
    articles = _RowWriter(articles_path, _with_index(ARTICLE_SCHEMA))
    skipped = _RowWriter(skipped_path, _with_index(SKIPPED_SCHEMA))
    counts = {"read": 0, "kept": 0, "skipped": 0}
    try:
        for position, (kind, row) in enumerate(results):
            row[INDEX] = task + position * tasks
            counts["read"] += 1
            if kind == "skipped":
                counts["skipped"] += 1
                skipped.add(row)
            else:
                counts["kept"] += 1
                articles.add(row)
    finally:
        articles.close()
        skipped.close()
    record = {"task": task, "tasks": tasks, **_identity(source, options, max_articles), "counts": counts,
              "articles_sha256": sha256_file(articles_path), "skipped_sha256": sha256_file(skipped_path)}
    partial_record = record_path.with_suffix(".json.partial")
    partial_record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial_record.rename(record_path)
    return record


def task_records(tasks_dir: Path) -> list[dict[str, Any]]:
    """Every task's record, in task order; an error names the tasks that did not finish."""
    tasks_dir = Path(tasks_dir)
    found = sorted(tasks_dir.glob("task-*.json"))
    if not found:
        raise IngestError(tasks_dir, "no ingest task finished here (no task-*.json)")
    records = [json.loads(path.read_text(encoding="utf-8")) for path in found]
    tasks = records[0]["tasks"]
    missing = sorted(set(range(tasks)) - {r["task"] for r in records})
    if missing:
        raise IngestError(tasks_dir, f"ingest tasks {missing} of 0..{tasks - 1} did not finish")
    return sorted(records, key=lambda r: r["task"])


def task_count(tasks_dir: Path) -> int:
    return int(task_records(tasks_dir)[0]["tasks"])


def _rows(path: Path, expected_sha256: str) -> Iterator[dict[str, Any]]:
    if sha256_file(path) != expected_sha256:
        raise IngestError(path, "content differs from what its task recorded (sha256): re-run the ingest")
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        yield from batch.to_pylist()


def _task_stream(tasks_dir: Path, record: dict[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    articles_path, skipped_path, _ = task_files(tasks_dir, record["task"])
    articles = ((row[INDEX], "article", row) for row in _rows(articles_path, record["articles_sha256"]))
    skipped = ((row[INDEX], "skipped", row) for row in _rows(skipped_path, record["skipped_sha256"]))
    return heapq.merge(articles, skipped, key=lambda item: item[0])


def merged_results(tasks_dir: Path, source: Source, options: ConvertOptions,
                   max_articles: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """("article" | "skipped", row) for every record of the input, in input order, from the tasks' files."""
    tasks_dir = Path(tasks_dir)
    records = task_records(tasks_dir)
    expected = _identity(source, options, max_articles)
    for record in records:
        if {key: record[key] for key in expected} != expected:
            raise IngestError(tasks_dir, f"ingest task {record['task']} read another input or used other options "
                              "than this ingest step: re-run the ingest")
    total = sum(record["counts"]["read"] for record in records)
    streams = [_task_stream(tasks_dir, record) for record in records]
    following = 0
    for index, kind, row in heapq.merge(*streams, key=lambda item: item[0]):
        if index != following:
            raise IngestError(tasks_dir, f"the tasks' outputs lack record {following} of the input")
        following += 1
        del row[INDEX]
        yield kind, row
    if following != total:
        raise IngestError(tasks_dir, f"the tasks' outputs hold {following} records, their records say {total}")
