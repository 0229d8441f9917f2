"""ZenML's execution modes on the real cluster: the orchestrator's wait loop over real sbatch jobs.

Four small jobs: ``sibling`` (runs 20 s), ``fail`` (starts once ``sibling`` has started, fails at once),
``after_sibling`` (afterok sibling) and ``after_fail`` (afterok fail). SLURM cancels ``after_fail`` in every
mode (``--kill-on-invalid-dep``); what else ends is the mode's business:

- FAIL_FAST: the running sibling is cancelled too;
- STOP_ON_FAILURE: the running sibling finishes, the job that had not started (after_sibling) is cancelled;
- CONTINUE_ON_FAILURE: the independent branch (sibling -> after_sibling) runs to the end.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from zenml.enums import ExecutionMode

from ptwiki_llm.hpc import orchestrator
from ptwiki_llm.hpc.orchestrator import SlurmOrchestrator, SlurmRunFailed, SubmittedJob
from ptwiki_llm.hpc.slurm import SlurmClient

pytestmark = pytest.mark.slurm

SCRIPTS = {
    "sibling": "echo sibling started; sleep 20; echo sibling done",
    "fail": "echo failing; exit 3",
    "after_sibling": "echo after_sibling ran",
    "after_fail": "echo after_fail ran",
}


def _submit(tmp_path: Path, partition: str) -> list[SubmittedJob]:
    jobs: dict[str, SubmittedJob] = {}

    def sbatch(step: str, dependency: str | None, after_ok: tuple[str, ...] = ()) -> None:
        log = tmp_path / f"{step}.log"
        env_file = tmp_path / f"{step}.env"
        env_file.write_text("")
        command = ["sbatch", "--parsable", f"--partition={partition}", "--cpus-per-task=1", "--mem=100M",
                   "--time=3", f"--job-name=ptwiki-modes-{step}", f"--output={log}"]
        if dependency:
            command += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
        command += ["--wrap", SCRIPTS[step]]
        job_id = SlurmClient().submit(command)
        jobs[step] = SubmittedJob(step, job_id, after_ok, tuple(command), "", str(log), str(env_file))

    sbatch("sibling", None)
    sbatch("fail", f"after:{jobs['sibling'].job_id}")  # starts once the sibling runs
    sbatch("after_sibling", f"afterok:{jobs['sibling'].job_id}", (jobs["sibling"].job_id,))
    sbatch("after_fail", f"afterok:{jobs['fail'].job_id}", (jobs["fail"].job_id,))
    return list(jobs.values())


def _run(tmp_path: Path, partition: str, mode: ExecutionMode, monkeypatch) -> tuple[dict[str, str], str, list[str]]:
    lines: list[str] = []
    monkeypatch.setattr(orchestrator, "emit", lines.append)
    fake = SimpleNamespace(config=SimpleNamespace(poll_seconds=1, log_tail_lines=3, cancel_on_interrupt=True),
                           _mark_failed=lambda *args: None)
    jobs = _submit(tmp_path, partition)
    try:
        with pytest.raises(SlurmRunFailed) as raised:
            SlurmOrchestrator._wait(fake, jobs, mode, None)
    finally:
        SlurmClient().cancel(job.job_id for job in jobs)
    infos = SlurmClient().states([job.job_id for job in jobs])
    return {job.step: infos[job.job_id].state for job in jobs}, str(raised.value), lines


def test_fail_fast_cancels_the_running_sibling(slurm_cluster, tmp_path, monkeypatch):
    states, report, _ = _run(tmp_path, slurm_cluster, ExecutionMode.FAIL_FAST, monkeypatch)
    assert states == {"sibling": "CANCELLED", "fail": "FAILED", "after_sibling": "CANCELLED",
                      "after_fail": "CANCELLED"}, report
    assert "step `fail` failed" in report and "exit code 3" in report
    assert "sibling done" not in (tmp_path / "sibling.log").read_text()


def test_stop_on_failure_lets_the_running_sibling_finish_and_starts_nothing_new(slurm_cluster, tmp_path,
                                                                                monkeypatch):
    states, report, lines = _run(tmp_path, slurm_cluster, ExecutionMode.STOP_ON_FAILURE, monkeypatch)
    assert states == {"sibling": "COMPLETED", "fail": "FAILED", "after_sibling": "CANCELLED",
                      "after_fail": "CANCELLED"}, report
    assert "sibling done" in (tmp_path / "sibling.log").read_text()
    assert not (tmp_path / "after_sibling.log").exists(), "a job that had not started must not start"
    assert any("stop_on_failure: cancelling" in line and "(running jobs finish)" in line for line in lines), lines


def test_continue_on_failure_runs_every_independent_branch(slurm_cluster, tmp_path, monkeypatch):
    states, report, _ = _run(tmp_path, slurm_cluster, ExecutionMode.CONTINUE_ON_FAILURE, monkeypatch)
    assert states == {"sibling": "COMPLETED", "fail": "FAILED", "after_sibling": "COMPLETED",
                      "after_fail": "CANCELLED"}, report
    assert "after_sibling ran" in (tmp_path / "after_sibling.log").read_text()
    assert "`after_fail`" in report.split("cancelled because of the failure:")[1]
