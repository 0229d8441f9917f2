"""The index step on real articles with the real embedder into LanceDB: counts, resume, kill + restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptwiki_llm.rag.index import RagIndex
from ptwiki_llm.rag.stores import SchemaMismatchError
from tests.conftest import stage_slice
from tests.rag.conftest import REPO, make_config

LIMIT = 8  # articles: enough for several write groups, small enough for 2 CPU cores
RAG = {"embedding": {"device": "cpu", "group_size": 8}}


def _table(config, result):
    import lancedb

    return lancedb.connect(str(config.expand(config.rag.store.lancedb_uri))).open_table(result.collection)


def _expected_ids(rows, quarantined, config, tokenizer):
    from ptwiki_llm.rag.chunking import Chunker, ChunkStats, unique_chunks

    kept = [r for r in rows if r["id"] != quarantined][:LIMIT]
    chunker = Chunker(tokenizer, config.rag.chunking)
    return {c.id for _, chunks in unique_chunks(kept, chunker, ChunkStats()) for c in chunks}


def test_index_stage_counts_logs_and_adds_nothing_the_second_time(tmp_path, corpus, asset_folders, e5_tokenizer):
    import mlflow
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.stages import index_stage

    config = make_config(tmp_path / "wd", asset_folders, **RAG)
    first = index_stage(stage_slice(config, "index"), corpus["validated"], None, show_progress=False,
                        max_articles=LIMIT)
    expected = _expected_ids(corpus["rows"], corpus["quarantined"], config, e5_tokenizer)
    counts = first.counts
    assert counts.articles == LIMIT and counts.embedded == len(expected) == counts.store_count
    assert first.collection.startswith(f"Ptwiki_{corpus['validated'].dataset_sha256[:12]}_multilingual_e5")
    table = _table(config, first)
    ids = table.to_arrow()["id"].to_pylist()
    assert set(ids) == expected and len(ids) == len(set(ids))
    assert corpus["quarantined"] not in set(table.to_arrow()["article_id"].to_pylist())

    second = index_stage(config, corpus["validated"], None, show_progress=False, max_articles=LIMIT)
    assert second.counts.embedded == 0 and second.counts.already_indexed == len(expected)
    assert second.counts.store_count == len(expected)

    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`ptwiki.step` = 'index'",
                              order_by=["attributes.start_time ASC"])
    assert [r.data.metrics["index.embedded"] for r in runs] == [len(expected), 0]
    assert runs[0].data.metrics["index.chunks_per_s"] > 0
    assert runs[0].data.params["index.collection"] == first.collection
    pointer = json.loads((config.workdir_path / "rag" / "current-lancedb.json").read_text())
    assert pointer["collection"] == first.collection


def test_an_embedder_of_another_dimension_is_refused_before_writing(tmp_path, corpus, asset_folders):
    from ptwiki_llm.rag.stores import CollectionSpec, open_store

    config = make_config(tmp_path / "wd", asset_folders, **RAG, store={"collection": "Ptwiki_fixed"})
    with open_store(config) as store:  # an existing collection written with 16-dim vectors
        store.open(CollectionSpec("Ptwiki_fixed", 16, "multilingual-e5-small-enpt"))
    from ptwiki_llm.stages import index_stage

    with pytest.raises(SchemaMismatchError, match="dimension: collection has 16, this run needs 384"):
        index_stage(config, corpus["validated"], None, show_progress=False, max_articles=2)
    with open_store(config) as store:
        store.open(CollectionSpec("Ptwiki_fixed", 16, "multilingual-e5-small-enpt"))
        assert store.count() == 0


def write_index_job(tmp_path: Path, config, corpus, rag: dict = RAG) -> Path:
    """The job file of tests/rag/_index_worker.py: index ``corpus`` up to LIMIT articles with ``config`` and the
    ``rag`` overrides (the store backend among them)."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "config_file": str(REPO / "configs" / "local.yaml"),
        "overrides": {"workdir": config.workdir, "asset_path": config.asset_path, "rag": rag},
        "validated": corpus["validated"].model_dump(mode="json"), "limit": LIMIT,
    }))
    return job


def _start_worker(job_file: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "rag" / "_index_worker.py"), str(job_file)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_way_resumes_to_the_same_index(tmp_path, corpus, asset_folders, e5_tokenizer):
    config = make_config(tmp_path / "wd", asset_folders, **RAG)
    expected = _expected_ids(corpus["rows"], corpus["quarantined"], config, e5_tokenizer)
    job = write_index_job(tmp_path, config, corpus)
    import lancedb

    lance_dir = config.expand(config.rag.store.lancedb_uri)
    worker = _start_worker(job)
    partial = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and worker.poll() is None:
        tables = lancedb.connect(str(lance_dir)).list_tables().tables if lance_dir.exists() else []
        partial = lancedb.connect(str(lance_dir)).open_table(tables[0]).count_rows() if tables else 0
        if partial > 0:
            worker.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    worker.wait(timeout=60)
    assert worker.returncode == -signal.SIGKILL, "the worker finished before it could be killed: " + \
        worker.stderr.read()[-2000:]
    assert 0 < partial < len(expected)

    resumed = _start_worker(job)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    result = RagIndex.model_validate_json(out.strip().splitlines()[-1])
    assert result.counts.already_indexed >= partial
    assert result.counts.embedded == len(expected) - result.counts.already_indexed
    ids = _table(config, result).to_arrow()["id"].to_pylist()
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
