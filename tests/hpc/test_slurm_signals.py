"""Cancel means cancel, on the real cluster: the generated job script around the real PreemptionWatcher.

A plain ``scancel`` (and so the driver's Ctrl-C, which calls it) makes the step save and exit 143, and the
job ends CANCELLED without a requeue; only SLURM's time-limit warning (``--signal=B:USR1``, sent here with
``scancel --signal=USR1 --batch`` as slurmctld would) leads to checkpoint + exit 75 + ``scontrol requeue``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptwiki_llm.config import SlurmJobConfig
from ptwiki_llm.hpc.jobscript import JobSpec, render_job_script, submit_command, write_env_file
from ptwiki_llm.hpc.slurm import SlurmClient

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]


def _submit(tmp_path: Path, partition: str) -> tuple[str, Path]:
    job = SlurmJobConfig(partition=partition, time="5", mem="1G", requeue=True, signal_seconds=60, max_requeues=1)
    spec = JobSpec(
        step="count", name=f"ptwiki-signals-{tmp_path.name[-12:]}", run_id="signals", job=job,
        command=(sys.executable, str(REPO / "tests" / "hpc" / "signal_step.py"), str(tmp_path)), workdir=str(REPO),
        script_path=tmp_path / "count.sbatch", log_path=tmp_path / "count.log", env_path=tmp_path / "count.env",
        max_requeues=1,
    )
    write_env_file(spec.env_path, {"PYTHONUNBUFFERED": "1"})
    spec.script_path.write_text(render_job_script(spec))
    return SlurmClient().submit(submit_command(spec.script_path)), spec.log_path


def _wait_for(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(token.split("=", 1) for token in out.split() if "=" in token)


def test_scancel_checkpoints_and_ends_cancelled_without_requeue(slurm_cluster, tmp_path):
    job_id, log = _submit(tmp_path, slurm_cluster)
    try:
        _wait_for(lambda: "signal_step: ready" in _log(log), "the step to start")
        subprocess.run(["scancel", job_id], check=True)
        info = _wait_for(lambda: (i := SlurmClient().states([job_id]).get(job_id)) and i.finished and i,
                         "the job to end")
        time.sleep(3)  # a requeue (the bug) would show as PENDING/REQUEUED right after the end
        fields = _job(job_id)
    finally:
        subprocess.run(["scancel", job_id], check=False)
    text = _log(log)
    assert info.state == "CANCELLED", (info, text)
    assert fields["JobState"] == "CANCELLED" and fields["Restarts"] == "0", fields
    assert "signal_step: SIGTERM at" in text and "checkpoint saved, exiting 143" in text, text
    assert "cancelled (SIGTERM/SIGINT): not requeued" in text and "requeueing" not in text, text
    assert (tmp_path / "count.json").exists(), "the cancelled step saved its checkpoint within KillWait"


def test_the_time_limit_warning_checkpoints_exits_75_and_requeues(slurm_cluster, tmp_path):
    job_id, log = _submit(tmp_path, slurm_cluster)
    try:
        _wait_for(lambda: "signal_step: ready" in _log(log), "the step to start")
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
        fields = _wait_for(lambda: (f := _job(job_id)).get("Restarts") == "1" and f, "the requeue")
        text = _log(log)
        assert "signal_step: SIGUSR1 at" in text and "checkpoint saved, exiting 75" in text, text
        assert f"requeueing job {job_id} (attempt 1 of 1)" in text, text
        assert fields["JobState"] in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "COMPLETING", "RUNNING"), fields
    finally:
        subprocess.run(["scancel", job_id], check=False)
    assert _wait_for(lambda: (i := SlurmClient().states([job_id]).get(job_id)) and i.finished and i,
                     "the cancel").state == "CANCELLED"
