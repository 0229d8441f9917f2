"""A small pipeline for the SLURM requeue test (imported by the step jobs from the repository root).

``count`` works in small units and keeps its progress in a checkpoint file; on SIGUSR1 (SLURM's
time-limit warning, forwarded by the job script) it saves and exits with the requeue code, as the
trainer does; the requeued job resumes from the file. ``check`` runs after it. Started by
``tests/hpc/slurm_driver.py``, because ZENML_CONFIG_PATH must be set before zenml is imported.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

from zenml import pipeline, step
from zenml.enums import ExecutionMode

UNITS = 700  # 0.1 s each: outlasts the warning (30-60 s into a 2-minute job), so attempt 0 is preempted
UNIT_SECONDS = 0.1
REQUEUE_EXIT_CODE = 75


def count_units(state_dir: str, units: int = UNITS) -> dict[str, Any]:
    """Count to ``units``, saving progress on SIGUSR1 and exiting 75; resume from the saved progress."""
    checkpoint = Path(state_dir) / "count.json"
    start = json.loads(checkpoint.read_text())["done"] if checkpoint.exists() else 0
    print(f"count: starting at {start} of {units}", flush=True)
    stop = {"requested": False}
    previous = signal.signal(signal.SIGUSR1, lambda *_: stop.update(requested=True))
    try:
        done = start
        while done < units:
            if stop["requested"]:
                checkpoint.write_text(json.dumps({"done": done}))
                print(f"count: SIGUSR1 at {done}, checkpoint saved, exiting {REQUEUE_EXIT_CODE}", flush=True)
                raise SystemExit(REQUEUE_EXIT_CODE)
            time.sleep(UNIT_SECONDS)
            done += 1
    finally:
        signal.signal(signal.SIGUSR1, previous)
    print(f"count: finished {done} (resumed from {start})", flush=True)
    return {"done": done, "resumed_from": start, "attempt": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


@step(enable_cache=False)
def count(state_dir: str) -> Annotated[dict[str, Any], "counted"]:
    return count_units(state_dir)


@step(enable_cache=False)
def check(counted: dict[str, Any]) -> Annotated[dict[str, Any], "checked"]:
    if counted["done"] != UNITS:
        raise ValueError(f"count stopped at {counted['done']}")
    return {**counted, "checked_in_job": os.environ.get("SLURM_JOB_ID")}


@pipeline(enable_cache=False, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def requeue_pipeline(state_dir: str) -> None:
    check(count(state_dir))


@step(enable_cache=False)
def noop() -> int:
    return 1


@pipeline(name="data_pipeline", enable_cache=False)
def other_data_pipeline() -> None:
    """A run named like ours: the 'previous run' of tests/hpc/run_identity_driver.py."""
    noop()
