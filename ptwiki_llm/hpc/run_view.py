"""What ``ptwiki-llm status``, ``logs`` and ``cancel`` do with the SLURM runs of a workdir.

A run is the folder ``<hpc.jobs_dir>/<ZenML run id>`` the orchestrator writes (``jobs.json``: its step jobs
and, when detached, its follower jobs). ``status`` asks squeue/sacct for each job's state and elapsed time;
a job SLURM no longer knows is read from the last line its job script wrote to its log, and when the log
says nothing either it is UNKNOWN until ``lost_after_s`` has passed since it was first missed, then LOST
(it counts as failed). When every step job has ended and nobody has closed the run, ``status`` closes it
(``detached.finish_run``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptwiki_llm.errors import PrerequisiteMissingError, UserError, WorkdirBusyError
from ptwiki_llm.hpc import detached
from ptwiki_llm.hpc.logs import LogFollower
from ptwiki_llm.hpc.slurm import PENDING_STATES, TERMINAL_STATES, JobInfo, SlurmClient

UNKNOWN_SINCE = "unknown.json"  # when status first missed each job SLURM did not know
LOST_AFTER_S = 120.0


class RunNotFoundError(UserError):
    """No SLURM run of this workdir matches what the user named."""


@dataclass
class JobRow:
    step: str
    job_id: str
    state: str
    reason: str = ""
    elapsed: str = ""
    exit_code: int | None = None
    log: str = ""
    note: str = ""

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES or self.state == detached.LOST


@dataclass
class RunView:
    run_dir: Path
    record: dict[str, Any]
    steps: list[JobRow]
    followers: list[JobRow] = field(default_factory=list)
    closed: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.record.get("run_name") or self.record["run_id"])

    @property
    def ended(self) -> bool:
        return all(row.ended for row in self.steps)

    @property
    def status(self) -> str:
        """FINISHED / FAILED / KILLED once closed; else RUNNING, PENDING, or ENDED (not closed yet)."""
        if self.closed:
            return str(self.closed["status"])
        if self.ended:
            return "ENDED"
        return "RUNNING" if any(row.state not in PENDING_STATES and not row.ended for row in self.steps) else "PENDING"


# --- finding runs -------------------------------------------------------------------------------


def runs(jobs_dir: Path) -> list[Path]:
    """Run folders, newest first."""
    found = [path.parent for path in Path(jobs_dir).glob(f"*/{detached.RECORD}")]
    return sorted(found, key=lambda p: (p / detached.RECORD).stat().st_mtime, reverse=True)


def find_run(jobs_dir: Path, ref: str | None) -> Path:
    """The run named ``ref`` (ZenML run name or id, or a unique prefix of either); the newest when None."""
    found = runs(jobs_dir)
    if not found:
        raise PrerequisiteMissingError(f"no SLURM runs in {jobs_dir}",
                                       "Start one with `ptwiki-llm run --detach` on a SLURM preset")
    if ref is None:
        return found[0]
    names = {path: (path.name, str(detached.read_record(path).get("run_name") or "")) for path in found}
    exact = [path for path, keys in names.items() if ref in keys]
    matches = exact or [path for path, keys in names.items() if any(k.startswith(ref) for k in keys if k)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(name or run_id for run_id, name in list(names.values())[:5])
        raise RunNotFoundError(f"no SLURM run {ref!r} in {jobs_dir}", f"Recent runs: {known}")
    raise RunNotFoundError(f"{ref!r} names {len(matches)} runs in {jobs_dir}", "Give more of the run's name or id")


# --- status ---------------------------------------------------------------------------------------


def _row(job: Mapping[str, Any], step: str, info: JobInfo | None, elapsed: Mapping[str, str],
         unknown: dict[str, float], now: float, lost_after_s: float) -> JobRow:
    job_id, log = str(job["job_id"]), str(job["log"])
    if info is not None:
        unknown.pop(job_id, None)
        waiting = info.state in PENDING_STATES
        # why a job waits, or why it did not complete (sacct keeps "Dependency" after a job ran: left out)
        shown = info.reason if waiting or (not info.succeeded and info.reason != "Dependency") else ""
        return JobRow(step, job_id, info.state, "" if shown == "None" else shown,
                      "" if waiting else elapsed.get(job_id, ""), info.exit_code, log)
    from_log = detached.state_from_log(Path(log))
    if from_log is not None:
        unknown.pop(job_id, None)
        return JobRow(step, job_id, from_log[0], "", "", from_log[1], log,
                      "SLURM no longer knows the job: state from its log")
    first = unknown.setdefault(job_id, now)
    missed = now - first
    if missed >= lost_after_s:
        return JobRow(step, job_id, detached.LOST, "", "", None, log,
                      f"neither squeue nor sacct has known the job for {missed:.0f}s")
    return JobRow(step, job_id, "UNKNOWN", "", "", None, log,
                  f"SLURM does not know the job (missed {missed:.0f}s; LOST after {lost_after_s:.0f}s)")


def view(run_dir: Path, client: SlurmClient, lost_after_s: float = LOST_AFTER_S) -> RunView:
    """Every job of the run as SLURM (or, for jobs it forgot, their log) reports it now."""
    record = detached.read_record(run_dir)
    followers = list((record.get("followers") or {}).values())
    ids = [str(job["job_id"]) for job in [*record["jobs"], *followers]]
    infos = client.states(ids)
    elapsed = client.elapsed(ids)
    unknown_path = Path(run_dir) / UNKNOWN_SINCE
    unknown: dict[str, float] = detached.read_json(unknown_path) or {}
    before = dict(unknown)
    now = time.time()
    steps = [_row(job, job["step"], infos.get(str(job["job_id"])), elapsed, unknown, now, lost_after_s)
             for job in record["jobs"]]
    follower_rows = [_row(job, job["role"], infos.get(str(job["job_id"])), elapsed, unknown, now, lost_after_s)
                     for job in followers]
    if unknown != before:
        detached.write_json(unknown_path, unknown)
    return RunView(Path(run_dir), record, steps, follower_rows, detached.finished(run_dir))


def close_if_ended(run: RunView, client: SlurmClient, config: Any = None, by: str = "status",
                   force: bool = False) -> RunView:
    """Every step job of a detached run ended and nobody closed it: close it here when its finish job will not
    (ended without closing, lost, or none), or with ``force`` (it is still queued long after the steps ended).
    An attached run's driver closes its own run."""
    if run.closed is not None or not run.ended or not run.record.get("detached"):
        return run
    finish = next((row for row in run.followers if row.step == "finish"), None)
    if finish is not None and not finish.ended and not force:
        return run
    states = {row.step: row.state for row in run.steps}
    run.closed = detached.finish_run(run.run_dir, states, by=f"ptwiki-llm {by} (pid {os.getpid()})", config=config)
    pending = [row.job_id for row in run.followers if row.state in PENDING_STATES]
    client.cancel(pending, pending_only=True)  # closed already: a follower still queued has nothing to do
    return run


# --- logs -----------------------------------------------------------------------------------------


def job_of(run: RunView, step: str) -> JobRow:
    rows = {row.step: row for row in [*run.steps, *run.followers]}
    if step not in rows:
        raise UserError(f"run {run.name} has no step {step!r}", f"Its jobs: {', '.join(rows)}")
    return rows[step]


def follow_log(run_dir: Path, step: str, client: SlurmClient, emit: Callable[[str], None],
               poll_seconds: float = 2.0) -> JobRow:
    """Print the log as it grows until the job ends (waiting for it to start, if it has not)."""
    follower = LogFollower(lambda line: emit(line[1:]))  # the follower puts "<prefix> " before each line
    while True:
        row = job_of(view(run_dir, client), step)
        follower.poll("", Path(row.log), final=row.ended)
        if row.ended:
            return row
        time.sleep(poll_seconds)


# --- cancel ---------------------------------------------------------------------------------------


def cancel(run_dir: Path, client: SlurmClient, wait_s: float = 60.0, poll_seconds: float = 2.0,
           config: Any = None) -> RunView:
    """``scancel`` every step job and the reaper (never a requeue: the job scripts exit on SIGTERM), then wait up
    to ``wait_s`` for them to end and close the run KILLED. The finish job is left queued: if the jobs take
    longer to end (a checkpoint within KillWait), it closes the run."""
    record = detached.read_record(run_dir)
    if detached.finished(run_dir) is None:
        detached.write_json(Path(run_dir) / detached.CANCEL_MARK, {"at": detached.now_iso(), "pid": os.getpid()})
    reaper = (record.get("followers") or {}).get("reap")
    client.cancel([str(job["job_id"]) for job in record["jobs"]] + ([str(reaper["job_id"])] if reaper else []))
    deadline = time.monotonic() + wait_s
    run = view(run_dir, client)
    while not run.ended and time.monotonic() < deadline:
        time.sleep(poll_seconds)
        run = view(run_dir, client)
    return close_if_ended(run, client, config, by="cancel", force=True)


# --- a workdir's runs that are still going ---------------------------------------------------------


def refuse_if_busy(jobs_dir: Path, client: SlurmClient | None = None) -> None:
    """A detached run still running in this workdir would race a new run for the same outputs: refuse."""
    candidates = [path for path in runs(jobs_dir) if detached.finished(path) is None
                  and (detached.read_record(path).get("detached"))]
    if not candidates or not SlurmClient.available():
        return
    client = client or SlurmClient(timeout=30)
    for run_dir in candidates:
        record = detached.read_record(run_dir)
        infos = client.states([str(job["job_id"]) for job in record["jobs"]])
        if any(not info.finished for info in infos.values()):
            name = record.get("run_name") or record["run_id"]
            raise WorkdirBusyError(f"detached run {name} is still running in this workdir",
                                   f"Follow it with `ptwiki-llm status {name}`, or stop it with "
                                   f"`ptwiki-llm cancel {name}`")
