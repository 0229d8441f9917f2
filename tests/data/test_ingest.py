from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from ptwiki_llm.config import IngestConfig
from ptwiki_llm.data.errors import CorruptInputError
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
