"""Runs that go wrong after ZenML and MLflow have started: a step's own error as the last line, two runs
on one workdir, and a run killed with SIGKILL, on a 50-article slice of the sample.

The stores are read with sqlite3 (read-only): the assertions hold whatever this process has imported.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = str(REPO / "configs" / "local.yaml")
ARTICLES = 50

pytestmark = pytest.mark.slow


def _env(workdir: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PTWIKI_", "MLFLOW_", "ZENML_"))}
    environ.update(PTWIKI_ASSET_PATH=os.environ.get("PTWIKI_ASSET_PATH", str(REPO.parent / "shared")),
                   PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES=str(ARTICLES), HF_HUB_OFFLINE="1",
                   COLUMNS="200")
    return environ


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ptwiki_llm.cli", *args, "-c", LOCAL]


def run_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(*args), cwd=REPO, env=_env(workdir), capture_output=True, text=True, timeout=900)


def start_cli(workdir: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """In its own session, so that SIGKILL reaches the CLI and the ingest workers it started."""
    handle = log.open("wb")
    return subprocess.Popen(_command(*args), cwd=REPO, env=_env(workdir), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def outputs(workdir: Path) -> dict[str, str]:
    """What a data run produced: the content-named folders and the hashes of the files in them."""
    found: dict[str, str] = {}
    for stage in ("articles", "validated", "formatted"):
        folders = sorted(p for p in (workdir / "data" / stage).iterdir() if p.is_dir())
        assert len(folders) == 1, folders
        found[stage] = folders[0].name
    found["dataset_sha256"] = json.loads((workdir / "data" / "articles" / found["articles"] / "manifest.json")
                                         .read_text())["dataset_sha256"]
    for split in ("train", "eval"):
        data = (workdir / "data" / "formatted" / found["formatted"] / f"{split}.jsonl").read_bytes()
        found[split] = hashlib.sha256(data).hexdigest()
    return found


def rows(database: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def mlflow_statuses(workdir: Path) -> list[tuple[str, str]]:
    return rows(workdir / "mlflow" / "mlflow.db", "SELECT run_uuid, status FROM runs")


def zenml_statuses(workdir: Path) -> tuple[list[tuple], list[tuple]]:
    database = workdir / "zenml" / "local_stores" / "default_zen_store" / "zenml.db"
    return (rows(database, "SELECT id, status, status_reason FROM pipeline_run"),
            rows(database, "SELECT id, status FROM step_run"))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, asset) -> dict[str, str]:
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    workdir = tmp_path_factory.mktemp("single")
    result = run_cli(workdir, "data")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return outputs(workdir)


def test_two_runs_on_one_workdir_one_refuses_naming_the_holder(single_run, tmp_path):
    workdir = tmp_path / "wd"
    first = start_cli(workdir, tmp_path / "a.log", "data")
    second = start_cli(workdir, tmp_path / "b.log", "data")
    codes = {first.wait(timeout=900), second.wait(timeout=900)}
    assert codes == {0, 3}, (tmp_path / "a.log").read_text()[-2000:] + (tmp_path / "b.log").read_text()[-2000:]
    winner, loser = (first, second) if first.returncode == 0 else (second, first)
    refusal = (tmp_path / ("a.log" if loser is first else "b.log")).read_text()
    assert "Traceback" not in refusal
    line = refusal.strip().splitlines()[-1]
    assert line.startswith(f"error: workdir {workdir} is in use by pid {winner.pid} on ")
    assert "ptwiki-llm data" in line and "started at" in line
    assert outputs(workdir) == single_run


def test_a_killed_run_is_closed_by_the_next_one(single_run, tmp_path):
    workdir = tmp_path / "wd"
    killed = start_cli(workdir, tmp_path / "killed.log", "data")
    deadline = time.monotonic() + 600
    # kill while a step runs: its MLflow run (and the ZenML run) are RUNNING
    while time.monotonic() < deadline and killed.poll() is None:
        database = workdir / "mlflow" / "mlflow.db"
        try:
            if database.exists() and any(s == "RUNNING" for _, s in mlflow_statuses(workdir)):
                break
        except sqlite3.OperationalError:
            pass  # the tables are being created
        time.sleep(0.5)
    assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    runs, _ = zenml_statuses(workdir)
    assert any(status in ("running", "initializing", "provisioning") for _, status, _ in runs), runs

    again = run_cli(workdir, "data")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "process gone" in again.stdout
    runs, steps = zenml_statuses(workdir)
    assert all(status in ("completed", "failed", "cached") for _, status, _ in runs), runs
    assert all(status in ("completed", "failed", "cached") for _, status in steps), steps
    assert any(status == "failed" and "process gone" in (reason or "") for _, status, reason in runs), runs
    statuses = mlflow_statuses(workdir)
    assert "RUNNING" not in {status for _, status in statuses}, statuses
    reasons = rows(workdir / "mlflow" / "mlflow.db", "SELECT value FROM tags WHERE key = 'ptwiki.end_reason'")
    assert reasons and all(value.startswith("process gone") for (value,) in reasons)
    assert outputs(workdir) == single_run


def test_an_error_inside_a_step_is_the_last_line(tmp_path):
    records = "".join(json.dumps({"id": str(i), "url": f"https://pt.wikipedia.org/wiki/A{i}", "title": f"Artigo {i}",
                                  "text": f"Texto {i} " + "palavra " * 4000}) + "\n" for i in range(200))
    packed = gzip.compress(records.encode())
    cut = tmp_path / "cut.jsonl.gz"
    # the start decompresses, the stream ends early: after ~20 records, before the 50 the run reads
    cut.write_bytes(packed[: len(packed) // 10])
    result = run_cli(tmp_path / "wd", "data", "--set", f"data.source={cut}")
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: step ingest: {cut} at line ") and "truncated or corrupt" in last, output[-3000:]


def test_a_dump_too_small_for_a_train_split_says_so(tmp_path, asset):
    dump = asset("data/ptwiki_dbpedia_minidump_berlim.xml.bz2")
    # one page, put in the eval split: the train split would be an empty file
    result = run_cli(tmp_path / "wd", "data", "--set", f"data.source={dump}", "--set",
                     "data.format.eval_fraction=0.99", "--set", "data.validate.max_failing_share=1")
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step format_examples: format (instruction) made no training examples"), output
