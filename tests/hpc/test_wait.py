"""The orchestrator's wait loop against a scripted SLURM: failure report, cancellation, flaky squeue."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from zenml.enums import ExecutionMode

from ptwiki_llm.hpc import orchestrator
from ptwiki_llm.hpc.orchestrator import SlurmOrchestrator, SlurmRunFailed, SubmittedJob
from ptwiki_llm.hpc.slurm import JobInfo, SlurmError


class ScriptedSlurm:
    """Answers ``states`` from a list of polls; records cancellations."""

    polls: ClassVar[list] = []
    cancelled: ClassVar[list] = []

    def states(self, job_ids):
        answer = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if isinstance(answer, Exception):
            raise answer
        return {job_id: JobInfo(job_id, *answer[job_id]) for job_id in job_ids if job_id in answer}

    def cancel(self, job_ids, pending_only=False):
        self.cancelled.append(sorted(job_ids))


@pytest.fixture
def harness(tmp_path, monkeypatch):
    ScriptedSlurm.polls, ScriptedSlurm.cancelled = [], []
    monkeypatch.setattr(orchestrator, "SlurmClient", ScriptedSlurm)
    lines: list[str] = []
    monkeypatch.setattr(orchestrator, "emit", lines.append)
    marked: list[str] = []
    fake = SimpleNamespace(
        config=SimpleNamespace(poll_seconds=0.01, log_tail_lines=2, cancel_on_interrupt=True),
        _mark_failed=lambda run_id, failures, report: marked.append(report),
    )
    jobs = []
    for step, job_id, after in (("ingest", "11", ()), ("validate", "12", ("11",)), ("index", "13", ("11",))):
        env = tmp_path / f"{step}.env"
        env.write_text("X=1\n")
        jobs.append(SubmittedJob(step, job_id, after, ("sbatch",), str(tmp_path / f"{step}.sbatch"),
                                 str(tmp_path / f"{step}.log"), str(env)))
    Path(jobs[0].log).write_text("starting\nTraceback (most recent call last):\nValueError: bad shard 3\n")
    return SimpleNamespace(run=lambda mode: SlurmOrchestrator._wait(fake, jobs, mode, "run-1"), lines=lines,
                           marked=marked, jobs=jobs)


def test_a_failure_stops_the_run_and_names_job_exit_code_and_log_tail(harness):
    ScriptedSlurm.polls = [
        {"11": ("RUNNING",), "12": ("PENDING", "Dependency"), "13": ("PENDING", "Dependency")},
        {"11": ("FAILED", "NonZeroExitCode", 1, 0), "12": ("PENDING", "Dependency"), "13": ("PENDING", "Dependency")},
        {"11": ("FAILED", "NonZeroExitCode", 1, 0), "12": ("CANCELLED", "DependencyNeverSatisfied"),
         "13": ("CANCELLED", "None")},
    ]
    with pytest.raises(SlurmRunFailed) as raised:
        harness.run(ExecutionMode.STOP_ON_FAILURE)
    message = str(raised.value)
    assert message.startswith("step `ingest` failed: SLURM job 11 FAILED, exit code 1, reason NonZeroExitCode\n")
    assert "    Traceback (most recent call last):\n    ValueError: bad shard 3" in message
    assert "starting" not in message  # only the last log_tail_lines lines
    assert message.endswith("cancelled because of the failure: `index` (job 13), `validate` (job 12)")
    assert ScriptedSlurm.cancelled == [["12", "13"]]
    assert harness.marked == [message]
    assert "[ingest#11] ValueError: bad shard 3" in harness.lines  # the log was streamed
    assert "[slurm] step `validate` job 12: PENDING (Dependency)" in harness.lines
    assert not any(Path(job.env_file).exists() for job in harness.jobs)


def test_continue_on_failure_leaves_independent_jobs_to_slurm(harness):
    ScriptedSlurm.polls = [
        {"11": ("COMPLETED", "None", 0, 0), "12": ("FAILED", "NonZeroExitCode", 2, 0), "13": ("RUNNING",)},
        {"11": ("COMPLETED", "None", 0, 0), "12": ("FAILED", "NonZeroExitCode", 2, 0),
         "13": ("COMPLETED", "None", 0, 0)},
    ]
    with pytest.raises(SlurmRunFailed, match="step `validate` failed: SLURM job 12 FAILED, exit code 2"):
        harness.run(ExecutionMode.CONTINUE_ON_FAILURE)
    assert ScriptedSlurm.cancelled == []


def test_a_flaky_controller_is_asked_again(harness):
    done = {"11": ("COMPLETED", "None", 0, 0), "12": ("COMPLETED", "None", 0, 0), "13": ("COMPLETED", "None", 0, 0)}
    ScriptedSlurm.polls = [SlurmError("squeue did not answer within 60s"), done]
    harness.run(ExecutionMode.STOP_ON_FAILURE)
    assert "[slurm] warning: squeue did not answer within 60s; asking again in 0s" in harness.lines
    assert harness.marked == []


def test_requeued_jobs_are_waited_for(harness):
    ScriptedSlurm.polls = [
        {"11": ("RUNNING",), "12": ("PENDING", "Dependency"), "13": ("PENDING", "Dependency")},
        {"11": ("PENDING", "BeginTime"), "12": ("PENDING", "Dependency"), "13": ("PENDING", "Dependency")},
        {"11": ("COMPLETED", "None", 0, 0), "12": ("COMPLETED", "None", 0, 0), "13": ("COMPLETED", "None", 0, 0)},
    ]
    harness.run(ExecutionMode.STOP_ON_FAILURE)
    assert "[slurm] step `ingest` job 11: PENDING (BeginTime)" in harness.lines
    assert "[slurm] step `ingest` job 11: COMPLETED" in harness.lines


def test_fail_fast_also_cancels_running_jobs(harness):
    ScriptedSlurm.polls = [
        {"11": ("COMPLETED", "None", 0, 0), "12": ("FAILED", "NonZeroExitCode", 2, 0), "13": ("RUNNING",)},
        {"11": ("COMPLETED", "None", 0, 0), "12": ("FAILED", "NonZeroExitCode", 2, 0), "13": ("CANCELLED", "None")},
    ]
    with pytest.raises(SlurmRunFailed, match="cancelled because of the failure: `index` \\(job 13\\)"):
        harness.run(ExecutionMode.FAIL_FAST)
    assert ScriptedSlurm.cancelled == [["13"]]


@pytest.mark.parametrize(("mode", "expected"), [
    (ExecutionMode.FAIL_FAST, ["1", "2", "3"]),
    (ExecutionMode.STOP_ON_FAILURE, ["2", "3"]),
    (ExecutionMode.CONTINUE_ON_FAILURE, []),
])
def test_jobs_a_failure_ends_follow_the_execution_mode(mode, expected):
    infos = {"1": JobInfo("1", "RUNNING"), "2": JobInfo("2", "PENDING", "Dependency")}  # 3: not yet in squeue
    assert orchestrator.jobs_to_cancel(mode, infos, ["1", "2", "3"]) == expected
