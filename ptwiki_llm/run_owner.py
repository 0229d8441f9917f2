"""Which process owns a run, and whether that process still exists.

A run records its owner (host, pid, the process's start time, the SLURM job it runs in) when it
starts, so a later process can tell a run that is still going from one whose process was killed
(kill -9, OOM, node failure) and left it RUNNING.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Any

import psutil

# A recorded start time within this many seconds of the live process's one is the same process
# (psutil's create_time has a resolution of a clock tick).
_START_TOLERANCE_S = 1.0


def current_owner() -> dict[str, Any]:
    """This process: host, pid, start time (seconds since the epoch) and SLURM job id if any."""
    owner: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": round(psutil.Process().create_time(), 3),
    }
    if os.environ.get("SLURM_JOB_ID"):
        owner["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return owner


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True if the owner runs, False if it is gone, None when this host cannot tell."""
    job = owner.get("slurm_job_id")
    if owner.get("host") == socket.gethostname() and owner.get("pid"):
        return _process_alive(int(owner["pid"]), owner.get("process_start"))
    if job:
        return _slurm_job_alive(str(job))
    return None


def _process_alive(pid: int, process_start: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    # the pid was reused by a later process: the owner is gone
    return process_start is None or abs(started - float(process_start)) <= _START_TOLERANCE_S


def _slurm_job_alive(job_id: str) -> bool | None:
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        listed = subprocess.run([squeue, "-h", "-o", "%i", "-j", job_id], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        # squeue fails on job ids it no longer knows ("Invalid job id specified"): the job is over
        return False if "invalid job id" in listed.stderr.lower() else None
    return bool(listed.stdout.strip())


def describe(owner: dict[str, Any]) -> str:
    where = f"pid {owner.get('pid')} on {owner.get('host')}"
    return where + (f" (SLURM job {owner['slurm_job_id']})" if owner.get("slurm_job_id") else "")
