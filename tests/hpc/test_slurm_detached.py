"""Detached runs and the ingest job array on the real cluster (infra/local-slurm/start.sh), through the CLI.

- a detached ``data`` run with ingest as a 2-task job array: ``--detach`` returns while the jobs run, the
  MLflow parent is RUNNING then (never FINISHED at submit time), the finish job closes it FINISHED once
  every job ended, and the merged corpus is byte-identical to a single ingest of the same input;
- ``cancel`` of a detached run: every job ends CANCELLED (none requeued) and the run is closed KILLED;
- a job SLURM does not know: UNKNOWN, then LOST once the bound has passed, and the run closed FAILED.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptwiki_llm.hpc import detached
from ptwiki_llm.hpc.slurm import SlurmClient
from tests.conftest import pinned_environ

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "local-slurm.yaml"


def _cli(workdir: Path, *args: str, max_articles: int = 10, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES=str(max_articles),
               HF_HUB_OFFLINE="1", COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", *args, "--config", str(CONFIG)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _submitted_name(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    found = re.search(r"submitted: run (\S+) \(ZenML run", " ".join(result.stdout.split()))
    assert found, result.stdout[-3000:]
    return found.group(1)


def _run_dir(workdir: Path) -> Path:
    (record,) = (workdir / "slurm").glob(f"*/{detached.RECORD}")
    return record.parent


def _all_job_ids(run_dir: Path) -> list[str]:
    record = detached.read_record(run_dir)
    return [j["job_id"] for j in record["jobs"]] + [f["job_id"] for f in record.get("followers", {}).values()]


def _parent_status(workdir: Path, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ptwiki-llm")
    (parent,) = client.search_runs([experiment.experiment_id],
                                   filter_string=f"tags.`ptwiki.pipeline_run_id` = '{run_id}'")
    return parent.info.status


def _single_ingest(workdir: Path, out: Path) -> dict:
    """The same ingest as the pipeline's, in one process and without the array."""
    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.config import load_config
    from ptwiki_llm.data.ingest import ingest
    from ptwiki_llm.data.sources.base import ConvertOptions

    cfg = load_config(CONFIG, {"workdir": str(workdir), "data": {"max_articles": 10}},
                      environ=pinned_environ())
    options = ConvertOptions(wiki_base_url=cfg.data.wiki_base_url, max_article_bytes=cfg.data.ingest.max_article_bytes,
                             min_text_chars=cfg.data.ingest.min_text_chars)
    return ingest(resolve_data_source(cfg), out, options, cfg.data.ingest, 10, show_progress=False).manifest


def test_detached_run_with_an_ingest_array_is_closed_by_its_finish_job(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    workdir = tmp_path / "work"
    result = _cli(workdir, "data", "--detach", "--set", "hpc.steps.ingest.array_tasks=2")
    name = _submitted_name(result)
    run_dir = _run_dir(workdir)
    try:
        busy = _cli(workdir, "data")  # a second run in the workdir would race this one for its outputs
        assert busy.returncode == 3 and f"detached run {name} is still running in this workdir" in busy.stderr, (
            busy.stdout[-2000:] + busy.stderr[-2000:])
        record = detached.read_record(run_dir)
        assert [j["step"] for j in record["jobs"]] == ["ingest-tasks", "ingest", "validate", "format_examples"]
        assert record["detached"] and set(record["followers"]) == {"finish", "reap"}  # stop_on_failure
        finish_id = record["followers"]["finish"]["job_id"]
        # the command returned while the jobs run: the finish job still waits, the MLflow parent is open
        assert SlurmClient().states([finish_id])[finish_id].state == "PENDING"
        assert _parent_status(workdir, record["run_id"]) == "RUNNING"
        during = _cli(workdir, "status", name)  # runs stale-run detection too: the run is not marked
        assert during.returncode == 0 and "closed" not in during.stdout, during.stdout[-3000:] + during.stderr

        waited = _cli(workdir, "status", name, "--wait", timeout=900)  # the finish job closes it within 120 s
        table = " ".join(waited.stdout.split())
        closed = detached.finished(run_dir)
        assert waited.returncode == 0 and closed is not None, table[-3000:] + waited.stderr[-2000:]
        assert closed["status"] == "FINISHED" and closed["closed_by"] == f"finish job {finish_id}", closed
        assert closed["steps"] == dict.fromkeys(("ingest-tasks", "ingest", "validate", "format_examples"),
                                                "COMPLETED")
        assert _parent_status(workdir, record["run_id"]) == "FINISHED"
        assert f"closed FINISHED by finish job {finish_id}" in table, table[-3000:]
        assert re.search(r"\W ingest\W+\d+\W+COMPLETED\W+\d+:\d+", table), table[-3000:]  # id, state, elapsed
        task_logs = _cli(workdir, "logs", name, "ingest-tasks").stdout
        assert "ingest task 0 of 2" in task_logs and "ingest task 1 of 2" in task_logs, task_logs[-2000:]
        reaper = record["followers"]["reap"]["job_id"]
        assert SlurmClient().states([reaper])[reaper].state == "CANCELLED"  # no failure: nothing to reap

        (manifest_path,) = (workdir / "data" / "articles").glob("*/manifest.json")
        merged = json.loads(manifest_path.read_text())
        single = _single_ingest(workdir, tmp_path / "single")
        assert merged["array_tasks"] == 2 and merged["counts"] == single["counts"]
        assert merged["shards"] == single["shards"] and merged["dataset_sha256"] == single["dataset_sha256"]
    finally:
        SlurmClient().cancel(_all_job_ids(run_dir))


def _hold_the_node(partition: str) -> str:
    """A job that takes the whole node for a minute, so what is submitted next waits (PENDING) behind it."""
    held = subprocess.run(["sbatch", "--parsable", "--exclusive", "-p", partition, "-J", "ptwiki-test-hold",
                           "-o", "/dev/null", "--wrap", "sleep 60"], capture_output=True, text=True, check=True)
    return held.stdout.strip().split(";")[0]


def test_cancel_ends_every_job_without_requeue_and_closes_the_run_killed(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    # nothing of the run may start before the cancel: otherwise which steps ran depends on the machine's speed
    hold = _hold_the_node(slurm_cluster)
    run_dir = None
    try:
        name = _submitted_name(_cli(tmp_path, "data", "--detach", max_articles=5000))
        run_dir = _run_dir(tmp_path)
        record = detached.read_record(run_dir)
        result = _cli(tmp_path, "cancel", name)
        output = " ".join(result.stdout.split())
        assert result.returncode == 0 and "closed KILLED by ptwiki-llm cancel" in output, output[-3000:]
        states = SlurmClient().states([j["job_id"] for j in record["jobs"]])
        assert {info.state for info in states.values()} == {"CANCELLED"}, states
        for job in record["jobs"]:
            log = Path(job["log"])
            assert not log.exists() or "requeueing" not in log.read_text()
            assert "Restarts=0" in subprocess.run(["scontrol", "show", "job", "-o", job["job_id"]],
                                                  capture_output=True, text=True).stdout.split()
        closed = detached.finished(run_dir)
        assert _parent_status(tmp_path, record["run_id"]) == "KILLED"
        # no step ever started: the ZenML run is marked STOPPED by the cancel itself, with nothing left unsaid
        assert closed["status"] == "KILLED" and closed["zenml_status"] == "stopped", json.dumps(closed)
        assert closed["notes"] == [], json.dumps(closed)
    finally:
        SlurmClient().cancel([hold] + (_all_job_ids(run_dir) if run_dir else []))


def test_a_job_slurm_does_not_know_is_lost_after_the_bound(slurm_cluster, tmp_path):
    run_dir = tmp_path / "slurm" / "00000000-0000-4000-8000-00000000abcd"
    run_dir.mkdir(parents=True)
    never = "67043327"  # beyond any id this cluster has handed out: neither squeue nor sacct knows it
    detached.write_json(run_dir / detached.RECORD, {
        "run_id": run_dir.name, "run_name": "data_pipeline-lost", "pipeline": "data_pipeline",
        "execution_mode": "stop_on_failure", "detached": True,
        "jobs": [{"step": "ingest", "job_id": never, "log": str(run_dir / "ingest.log")}]})
    # one status --wait: UNKNOWN at first, LOST once 3 s have passed, then the run is closed FAILED
    waited = _cli(tmp_path, "status", "data_pipeline-lost", "--wait", "--lost-after", "3")
    table = " ".join(waited.stdout.split())
    assert waited.returncode == 1 and "LOST" in table and "closed FAILED by ptwiki-llm status" in table, table[-3000:]
    assert detached.finished(run_dir)["steps"] == {"ingest": "LOST"}


def test_a_failed_step_is_reaped_and_the_run_closed_failed(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    # every article fails the Portuguese-score expectation: validate fails
    name = _submitted_name(_cli(tmp_path, "data", "--detach", "--set", "data.validate.min_portuguese_score=0.99"))
    run_dir = _run_dir(tmp_path)
    record = detached.read_record(run_dir)
    try:
        waited = _cli(tmp_path, "status", name, "--wait", timeout=900)
        closed = detached.finished(run_dir)
        assert waited.returncode == 1 and closed is not None, waited.stdout[-3000:] + waited.stderr[-2000:]
        assert "closed FAILED by finish job" in " ".join(waited.stdout.split())
        assert closed["status"] == "FAILED" and closed["zenml_status"] == "failed", closed
        assert closed["steps"] == {"ingest": "COMPLETED", "validate": "FAILED", "format_examples": "CANCELLED"}
        reaped = detached.read_json(run_dir / detached.REAPED)  # the reaper started on validate's failure
        assert reaped is not None and reaped["mode"] == "stop_on_failure", reaped
        assert reaped["job"] == record["followers"]["reap"]["job_id"]
        assert "cancelling the jobs that have not started" in (run_dir / "reap.log").read_text()
        assert _parent_status(tmp_path, record["run_id"]) == "FAILED"
    finally:
        SlurmClient().cancel(_all_job_ids(run_dir))
