"""A thin client over the SLURM command-line tools: submit, query, cancel.

State comes from ``squeue --states=all`` (jobs the controller still holds, finished ones included for
``MinJobAge``); exit codes and jobs the controller has forgotten come from ``sacct`` when accounting is
on, else from ``scontrol show job``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Job states (squeue/sacct long names) after which a job never runs again.
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "PREEMPTED", "SPECIAL_EXIT", "REVOKED",
})
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD"})


class SlurmError(RuntimeError):
    """A SLURM command failed (its stderr is in the message)."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # long name, e.g. PENDING, RUNNING, COMPLETED, FAILED, CANCELLED
    reason: str = ""
    exit_code: int | None = None  # the batch script's exit code, once known
    signal: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "COMPLETED"


def parse_job_id(sbatch_output: str) -> str:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    text = sbatch_output.strip().splitlines()[-1] if sbatch_output.strip() else ""
    job_id = text.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {sbatch_output!r}")
    return job_id


def _state_word(raw: str) -> str:
    # sacct writes "CANCELLED by 1000"; squeue and sacct abbreviate nothing in the long forms used here
    return raw.split()[0].rstrip("+") if raw.strip() else "UNKNOWN"


def parse_exit_code(raw: str) -> tuple[int | None, int | None]:
    """``"1:0"`` -> (1, 0): exit code and terminating signal."""
    code, _, sig = raw.strip().partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return None, None


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """Lines of ``squeue --format=%i|%T|%r``."""
    jobs = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        job_id = parts[0].strip()
        jobs[job_id] = JobInfo(job_id, _state_word(parts[1]), parts[2].strip() if len(parts) > 2 else "")
    return jobs


def parse_sacct(output: str) -> dict[str, JobInfo]:
    """Lines of ``sacct -n -P -X -o JobID,State,ExitCode,Reason``."""
    jobs = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        job_id = parts[0].strip()
        code, sig = parse_exit_code(parts[2])
        reason = parts[3].strip() if len(parts) > 3 else ""
        jobs[job_id] = JobInfo(job_id, _state_word(parts[1]), reason, code, sig)
    return jobs


def parse_scontrol(output: str) -> JobInfo | None:
    """``scontrol show job -o <id>``: one line of Key=Value pairs."""
    fields = {}
    for token in output.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    if "JobId" not in fields:
        return None
    code, sig = parse_exit_code(fields.get("ExitCode", ""))
    return JobInfo(fields["JobId"], _state_word(fields.get("JobState", "")), fields.get("Reason", ""), code, sig)


def aggregate_arrays(infos: dict[str, JobInfo], job_ids: Sequence[str]) -> dict[str, JobInfo]:
    """A job array asked for by its id, as one job: squeue and sacct list its tasks (``12_0``, ``12_[1-3]``).

    Running while a task runs, pending while one waits, COMPLETED when all completed, else the first task
    that did not (with its exit code).
    """
    combined = dict(infos)
    for job_id in job_ids:
        if job_id in infos:
            continue
        tasks = [info for key, info in sorted(infos.items()) if key.startswith(f"{job_id}_")]
        if not tasks:
            continue
        running = [t for t in tasks if not t.finished and t.state not in PENDING_STATES]
        waiting = [t for t in tasks if t.state in PENDING_STATES]
        failed = [t for t in tasks if t.finished and not t.succeeded]
        chosen = (running or waiting or failed or tasks)[0]
        combined[job_id] = JobInfo(job_id, chosen.state, chosen.reason, chosen.exit_code, chosen.signal)
    return combined


def parse_elapsed(output: str) -> dict[str, str]:
    """Lines of ``<job id>|<elapsed>`` (squeue ``%i|%M``, sacct ``JobID,Elapsed``)."""
    times = {}
    for line in output.splitlines():
        job_id, _, value = line.strip().partition("|")
        if job_id and value.strip():
            times[job_id] = value.strip()
    return times


class SlurmClient:
    """Runs the SLURM tools on this machine (a login node, or a node of a local test cluster)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._accounting: bool | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("sbatch") is not None and shutil.which("squeue") is not None

    def _run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(list(argv), capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError as exc:
            raise SlurmError(f"{argv[0]} not found: is this a SLURM login node (or is the `module` loaded)?") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{' '.join(argv)} did not answer within {self.timeout:.0f}s") from exc
        if check and result.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
        return result

    def submit(self, command: Sequence[str]) -> str:
        """Run an ``sbatch --parsable ...`` command line; returns the job id."""
        return parse_job_id(self._run(command).stdout)

    def cancel(self, job_ids: Iterable[str], pending_only: bool = False) -> None:
        ids = sorted(set(job_ids), key=int)
        if ids:
            self._run(["scancel", *(["--state=PENDING"] if pending_only else []), *ids], check=False)

    @property
    def accounting(self) -> bool:
        """Whether ``sacct`` answers (slurmdbd configured)."""
        if self._accounting is None:
            probe = ["sacct", "--noheader", "--allocations", "--jobs=1"]
            self._accounting = shutil.which("sacct") is not None and self._run(probe, check=False).returncode == 0
        return self._accounting

    def squeue(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        if not job_ids:
            return {}
        result = self._run(
            ["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%T|%r"], check=False
        )
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise SlurmError(f"squeue failed: {result.stderr.strip()}")
        return parse_squeue(result.stdout)

    def sacct(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        if not job_ids or not self.accounting:
            return {}
        result = self._run(
            ["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(job_ids)}",
             "--format=JobID,State,ExitCode,Reason"]
        )
        return parse_sacct(result.stdout)

    def scontrol(self, job_id: str) -> JobInfo | None:
        result = self._run(["scontrol", "show", "job", "-o", job_id], check=False)
        return parse_scontrol(result.stdout) if result.returncode == 0 else None

    def elapsed(self, job_ids: Sequence[str]) -> dict[str, str]:
        """How long each job has run (or ran), as SLURM writes it (``[D-][HH:]MM:SS``)."""
        if not job_ids:
            return {}
        result = self._run(
            ["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%M"], check=False
        )
        times = parse_elapsed(result.stdout)
        rest = [job_id for job_id in job_ids if job_id not in times]
        if rest and self.accounting:
            result = self._run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(rest)}",
                                "--format=JobID,Elapsed"], check=False)
            times.update(parse_elapsed(result.stdout))
        return {job_id: value for job_id, value in times.items() if job_id in job_ids}

    def states(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """State of each job; finished jobs also carry their exit code. A job array's id stands for its tasks."""
        found = aggregate_arrays(self.squeue(job_ids), job_ids)
        need_detail = [j for j in job_ids if j not in found or found[j].finished]
        detailed = aggregate_arrays(self.sacct(need_detail), need_detail)
        for job_id in need_detail:
            info = detailed.get(job_id)
            if info is None or (info.exit_code is None and info.finished):
                info = self.scontrol(job_id) or info
            if info is not None:
                # squeue's state is the controller's current view; sacct may lag a poll behind it
                if job_id in found and not info.finished:
                    info = JobInfo(job_id, found[job_id].state, found[job_id].reason, info.exit_code, info.signal)
                found[job_id] = info
        return found
