from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from ptwiki_llm.config import IngestConfig
from ptwiki_llm.data.errors import CorruptInputError, IngestError
from ptwiki_llm.data.ingest import ingest, load_manifest, shard_paths
from ptwiki_llm.data.sources.base import ConvertOptions

TEXT = "O rio Douro nasce em Espanha e desagua no oceano Atlântico, no Porto. " * 3


def _write_jsonl(path, n: int, bad_every: int = 0) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for i in range(1, n + 1):
            if bad_every and i % bad_every == 0:
                out.write("{broken json\n")
                continue
            text = "" if i % 11 == 0 else f"{TEXT} Artigo {i}."
            out.write(json.dumps({"id": str(i), "url": f"u{i}", "title": f"Artigo {i}", "text": text}) + "\n")


def test_accounting_adds_up_and_skips_are_recorded(tmp_path):
    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 100, bad_every=17)
    result = ingest(dump, tmp_path / "out", ConvertOptions(), IngestConfig(workers=1, shard_size=30),
                    show_progress=False)
    counts = result.manifest["counts"]
    assert counts["read"] == 100
    assert counts["skipped"] == {"empty": 9, "malformed_record": 5}  # 11,22,..99 (minus 17-multiples) / 17,34..
    assert counts["read"] == counts["kept"] + sum(counts["skipped"].values())
    rows = sum(pq.read_metadata(p).num_rows for p in result.shards)
    assert rows == counts["kept"] == 86
    assert [s["rows"] for s in result.manifest["shards"]] == [30, 30, 26]
    skipped = pq.read_table(result.out_dir / "skipped.parquet").to_pylist()
    assert len(skipped) == 14 and {row["reason"] for row in skipped} == {"empty", "malformed_record"}
    assert any(row["position"] == "articles.jsonl.gz:line 17" for row in skipped)
    inputs = result.manifest["inputs"]
    assert inputs[0]["size"] == dump.stat().st_size and len(inputs[0]["sha256"]) == 64
    assert load_manifest(result.out_dir) == result.manifest
    assert shard_paths(result.out_dir) == result.shards


def test_shards_close_on_text_size_as_well_as_row_count(tmp_path):
    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 40)  # 37 kept, each about 200 characters of text
    result = ingest(dump, tmp_path / "out", ConvertOptions(),
                    IngestConfig(workers=1, shard_size=30, shard_max_chars=2000), show_progress=False)
    texts = [pq.read_table(shard, columns=["text"])["text"].to_pylist() for shard in result.shards]
    assert sum(map(len, texts)) == 37 and len(texts) > 2  # the row bound (30) alone would give 2 shards
    for shard in texts[:-1]:  # each closed by the article that took it to 2,000 characters, not before
        assert sum(map(len, shard)) >= 2000 > sum(map(len, shard[:-1]))


def test_parallel_output_is_byte_identical_to_serial(tmp_path):
    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 300, bad_every=50)
    serial = ingest(dump, tmp_path / "s", ConvertOptions(), IngestConfig(workers=1, shard_size=64), show_progress=False)
    parallel = ingest(dump, tmp_path / "p", ConvertOptions(), IngestConfig(workers=2, shard_size=64, batch_size=5),
                      show_progress=False)
    assert serial.manifest["dataset_sha256"] == parallel.manifest["dataset_sha256"]
    assert [s["sha256"] for s in serial.manifest["shards"]] == [s["sha256"] for s in parallel.manifest["shards"]]


def test_max_articles_limits_records_read(tmp_path):
    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 50)
    result = ingest(dump, tmp_path / "out", ConvertOptions(), IngestConfig(workers=1), max_articles=20,
                    show_progress=False)
    assert result.manifest["counts"]["read"] == 20


def test_corrupt_input_leaves_no_output(tmp_path):
    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 2000)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInputError, match=r"articles\.jsonl\.gz at line \d+"):
        ingest(dump, tmp_path / "out", ConvertOptions(), IngestConfig(workers=1), show_progress=False)
    assert not (tmp_path / "out").exists()


def _write_skips(path, skips: int) -> None:
    """``skips`` empty articles (each skipped), then one good one."""
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for i in range(1, skips + 2):
            text = f"{TEXT} Artigo {i}." if i == skips + 1 else ""
            out.write(json.dumps({"id": str(i), "url": f"u{i}", "title": f"Artigo {i}", "text": text}) + "\n")


def _peak_bytes(dump, out) -> tuple[int, dict]:
    import tracemalloc

    tracemalloc.start()
    try:
        result = ingest(dump, out, ConvertOptions(), IngestConfig(workers=1), show_progress=False)
        return tracemalloc.get_traced_memory()[1], result.manifest
    finally:
        tracemalloc.stop()


def test_skipped_records_stream_to_disk_and_memory_stays_flat(tmp_path, monkeypatch):
    """Ten times the skipped records, about the same peak memory: skips are written in batches as they come,
    never held in a list (a list of 30,000 rows holds ~10 MB more than one of 3,000; the batch is 100 rows)."""
    from ptwiki_llm.data import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "SKIP_BATCH_ROWS", 100)
    few, many = tmp_path / "few.jsonl.gz", tmp_path / "many.jsonl.gz"
    _write_skips(few, 3_000)
    _write_skips(many, 30_000)
    _peak_bytes(few, tmp_path / "warm")  # imports and caches happen before the measured runs
    peak_few, manifest_few = _peak_bytes(few, tmp_path / "few")
    peak_many, manifest_many = _peak_bytes(many, tmp_path / "many")
    assert manifest_few["counts"]["skipped"] == {"empty": 3_000}
    assert manifest_many["counts"]["skipped"] == {"empty": 30_000} and manifest_many["counts"]["kept"] == 1
    assert peak_many < peak_few + 2_000_000, (peak_few, peak_many)
    skipped = pq.ParquetFile(tmp_path / "many" / "skipped.parquet")
    assert skipped.metadata.num_rows == 30_000
    assert max(skipped.metadata.row_group(i).num_rows for i in range(skipped.num_row_groups)) == 100
    assert skipped.read_row_group(0).column("position").to_pylist()[0] == "many.jsonl.gz:line 1"


def test_array_tasks_merge_into_the_single_run_corpus(tmp_path, monkeypatch):
    """Three array tasks, each cleaning every third record, merge into byte-identical shards."""
    from ptwiki_llm.data.ingest import TASKS_DIR_ENV
    from ptwiki_llm.data.ingest_tasks import run_task, task_files

    dump = tmp_path / "articles.jsonl.gz"
    _write_jsonl(dump, 200, bad_every=23)
    cfg = IngestConfig(workers=1, shard_size=40)
    single = ingest(dump, tmp_path / "single", ConvertOptions(), cfg, max_articles=190, show_progress=False)
    tasks_dir = tmp_path / "tasks"
    reads = [run_task(dump, tasks_dir, ConvertOptions(), cfg, 190, task, 3)["counts"]["read"] for task in range(3)]
    assert reads == [64, 63, 63]
    monkeypatch.setenv(TASKS_DIR_ENV, str(tasks_dir))
    merged = ingest(dump, tmp_path / "merged", ConvertOptions(), cfg, max_articles=190, show_progress=False)
    assert merged.manifest["dataset_sha256"] == single.manifest["dataset_sha256"]
    assert merged.manifest["shards"] == single.manifest["shards"]
    assert merged.manifest["counts"] == single.manifest["counts"] and merged.manifest["array_tasks"] == 3
    assert (pq.read_table(merged.out_dir / "skipped.parquet").to_pylist()
            == pq.read_table(single.out_dir / "skipped.parquet").to_pylist())

    # a task file changed after its task finished is refused, by its sha256
    articles, _, _ = task_files(tasks_dir, 1)
    pq.write_table(pq.read_table(articles).slice(0, 5), articles)
    with pytest.raises(IngestError, match="content differs from what its task recorded"):
        ingest(dump, tmp_path / "again", ConvertOptions(), cfg, max_articles=190, show_progress=False)
    # and so is a merge with other options than the tasks used
    run_task(dump, tasks_dir, ConvertOptions(), cfg, 190, 1, 3)
    with pytest.raises(IngestError, match="read another input or used other options"):
        ingest(dump, tmp_path / "again", ConvertOptions(min_text_chars=5), cfg, max_articles=190,
               show_progress=False)
