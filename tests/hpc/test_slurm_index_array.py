"""The index job array on the real cluster (infra/local-slurm/start.sh): two array tasks embed their shards
of a small corpus into parts, the index step's merge writes them to LanceDB, and the collection holds the
same passage ids and vectors as a single-process index of the same corpus.

The array is submitted by ``job_array.submit_tasks``, the code the SLURM orchestrator submits it with,
from the index step's job spec; ingest, validate and the merging index step run in this process (the
pipeline's jobs around the array are what ``test_slurm_detached`` and ``test_slurm_cluster`` drive).
The embedding is float32 on both sides: bf16 matmuls round differently with the padding of another batch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ptwiki_llm.hpc.slurm import SlurmClient
from tests.conftest import pinned_environ

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "local-slurm.yaml"
ARTICLES = 12


def _config(workdir: Path, lancedb: Path):
    from ptwiki_llm.config import load_config

    return load_config(CONFIG, {"workdir": str(workdir), "data": {"max_articles": ARTICLES},
                                "rag": {"embedding": {"device": "cpu", "bf16_autocast": False},
                                        "store": {"lancedb_uri": str(lancedb)}}},
                       environ=pinned_environ())


def _wait(job_id: str, timeout: float = 600) -> object:
    client = SlurmClient()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.states([job_id])[job_id]
        if info.finished:
            return info
        time.sleep(2)
    client.cancel([job_id])
    raise AssertionError(f"index array {job_id} did not end within {timeout} s")


def _contents(config, collection: str) -> tuple[list[str], np.ndarray]:
    import lancedb

    table = lancedb.connect(str(config.expand(config.rag.store.lancedb_uri))).open_table(collection)
    rows = table.to_arrow().sort_by("id")
    return rows["id"].to_pylist(), np.stack(rows["vector"].to_numpy(zero_copy_only=False))


def test_an_index_over_a_two_task_array_equals_the_single_process_index(slurm_cluster, asset, tmp_path, monkeypatch):
    from ptwiki_llm.config import SlurmJobConfig
    from ptwiki_llm.config_slice import config_for_stage
    from ptwiki_llm.hpc.job_array import submit_tasks
    from ptwiki_llm.hpc.jobscript import JobSpec
    from ptwiki_llm.rag.index_parts import IndexPartsError
    from ptwiki_llm.stages import INDEX_TASKS_ENV, index_stage, ingest_stage, validate_stage
    from tests.conftest import stage_slice

    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/multilingual-e5-small-enpt")
    workdir = tmp_path / "work"
    config = _config(workdir, tmp_path / "array-lancedb")
    validated = validate_stage(stage_slice(config, "validate"), ingest_stage(stage_slice(config, "ingest"),
                                                                             show_progress=False))

    run_dir = workdir / "slurm" / "index-array-test"
    run_dir.mkdir(parents=True)
    job = SlurmJobConfig(partition=slurm_cluster, time="00:10:00", cpus_per_task=1, mem="3G", array_tasks=2)
    base = JobSpec(step="index", name="ptwiki-test-index", run_id="index-array-test", job=job,
                   command=(sys.executable, "-m", "zenml.entrypoints.entrypoint"), workdir=str(REPO),
                   script_path=run_dir / "index.sbatch", log_path=run_dir / "index.log", env_path=run_dir / "index.env")
    environment = {"PTWIKI_SOURCE_ROOT": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "ZENML_STORE_API_KEY": "secret"}
    parameters = {stage: {"config": config_for_stage(config, stage)} for stage in ("ingest", "validate", "index")}
    started = time.monotonic()
    job_id, array, _ = submit_tasks(SlurmClient(), base, environment, parameters["index"], run_dir, (),
                                    "ptwiki-test", parameters)
    try:
        info = _wait(job_id)
        array_s = time.monotonic() - started
        logs = {task: Path(str(array.log_path).replace("%a", str(task))).read_text() for task in (0, 1)}
        assert info.succeeded, logs
        for task, log in logs.items():
            assert f"index task {task} of 2: embedded" in log, log[-2000:]
        assert "ZENML_STORE_API_KEY" not in array.env_path.read_text()  # the tasks get no secrets

        monkeypatch.setenv(INDEX_TASKS_ENV, environment[INDEX_TASKS_ENV])
        merged = index_stage(stage_slice(config, "index"), validated, show_progress=False)
        monkeypatch.delenv(INDEX_TASKS_ENV)
        single_config = _config(workdir, tmp_path / "single-lancedb")
        single = index_stage(stage_slice(single_config, "index"), validated, show_progress=False)

        assert merged.collection == single.collection and merged.identity == single.identity
        assert merged.counts == single.counts and merged.counts.embedded > 20
        assert [p["task"] for p in merged.array_parts] == [0, 1] and not single.array_parts
        assert sum(p["articles"] for p in merged.array_parts) == merged.counts.articles
        merged_ids, merged_vectors = _contents(config, merged.collection)
        single_ids, single_vectors = _contents(single_config, single.collection)
        assert merged_ids == single_ids and len(merged_ids) == merged.counts.store_count
        difference = float(np.abs(merged_vectors - single_vectors).max())
        assert difference < 1e-5, difference
        print(f"\n2-task index array: {array_s:.1f} s from submit to end; {len(merged_ids)} passages; "
              f"max |vector difference| to the single-process index {difference:.2e}")

        # a part lost: the merge names its task and log before touching the store; a re-run redoes only it
        (lost,) = config.expand(config.rag.store.parts_dir).glob("part-00001-of-00002-*.json")
        lost.unlink()
        monkeypatch.setenv(INDEX_TASKS_ENV, environment[INDEX_TASKS_ENV])
        with pytest.raises(IndexPartsError, match=f"task 1: no part .*its log: {run_dir}/index-tasks-1.log"):
            index_stage(stage_slice(config, "index"), validated, show_progress=False)
        job_id, _, _ = submit_tasks(SlurmClient(), base, dict(environment), parameters["index"], run_dir, (),
                                    "ptwiki-test", parameters)
        assert _wait(job_id).succeeded
        last = {task: Path(str(array.log_path).replace("%a", str(task))).read_text().rsplit(
            f"index task {task} of 2: ", 1)[-1] for task in (0, 1)}  # the logs are appended to
        assert last[0].startswith("reused its part") and last[1].startswith("embedded"), last
        assert lost.is_file()
    finally:
        SlurmClient().cancel([job_id])
