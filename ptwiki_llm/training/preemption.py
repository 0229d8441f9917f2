"""Checkpoints and preemption: stop cleanly at a step boundary when SLURM says time is up, or on cancel.

Two signals, two meanings:

- SIGUSR1 is SLURM's time-limit warning (``#SBATCH --signal=B:USR1@<signal_seconds>``). At the next
  optimizer-step boundary the Trainer saves a full checkpoint (adapter, optimizer, scheduler, RNG, data
  position) and the run exits with ``PREEMPTED_EXIT_CODE`` (75, EX_TEMPFAIL: "try again"), so the job
  script requeues it; the requeued run finds the checkpoint in the same run folder and resumes from it.
- SIGTERM is ``scancel``, a cancelled driver (Ctrl-C), or the time limit itself: the run saves a
  checkpoint if it reaches a step boundary within SLURM's ``KillWait`` (SIGKILL follows) and exits with
  ``CANCELLED_EXIT_CODE`` (143 = 128 + SIGTERM), which nothing requeues. A later run of the same
  command still resumes from that checkpoint. SIGTERM wins over a warning that came before or after it.

A ``STOP`` file in the run folder requests the same from any process (launchers forward signals this
way to torchrun ranks; its text names the signal, empty means the warning); under DDP the ranks agree on
stopping through an all-reduce, so every rank saves at the same step.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 75
CANCELLED_EXIT_CODE = 128 + signal.SIGTERM
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
CANCEL_SIGNAL = "SIGTERM"
STOP_FILE = "STOP"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingPreempted(SystemExit):
    """Training stopped on request after saving a checkpoint; exits the process with code 75."""

    def __init__(self, checkpoint: str | None, global_step: int, signal_name: str | None) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.checkpoint = checkpoint
        self.global_step = global_step
        self.signal_name = signal_name

    def __str__(self) -> str:
        return (f"training preempted ({self.signal_name or 'stop request'}) at step {self.global_step}; "
                f"checkpoint {self.checkpoint}; rerun the same command to resume (exit code {PREEMPTED_EXIT_CODE})")


class TrainingCancelled(TrainingPreempted):
    """Training was cancelled (SIGTERM) after saving a checkpoint; exits with code 143, never requeued."""

    def __init__(self, checkpoint: str | None, global_step: int, signal_name: str | None) -> None:
        super().__init__(checkpoint, global_step, signal_name)
        self.code = CANCELLED_EXIT_CODE

    def __str__(self) -> str:
        return (f"training cancelled ({self.signal_name}) at step {self.global_step}; checkpoint {self.checkpoint}; "
                f"not requeued: rerun the same command to resume (exit code {CANCELLED_EXIT_CODE})")


def stop_exception(checkpoint: str | None, global_step: int, signal_name: str | None) -> TrainingPreempted:
    """What a stopped run raises: cancelled for SIGTERM, preempted (requeue me) for the warning."""
    kind = TrainingCancelled if signal_name == CANCEL_SIGNAL else TrainingPreempted
    return kind(checkpoint, global_step, signal_name)


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first (a folder without trainer_state.json was cut off mid-save)."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1][1] if found else None


class PreemptionWatcher:
    """Installs handlers for SIGUSR1/SIGTERM (main thread only) and restores the previous ones on exit."""

    def __init__(self, run_dir: Path) -> None:
        self.stop_file = run_dir / STOP_FILE
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionWatcher:
        self.stop_file.unlink(missing_ok=True)  # a stale request from the run we resume must not stop us
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        else:
            logger.warning("training runs outside the main thread: only the STOP file can request preemption")
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name != CANCEL_SIGNAL:  # a cancel stays a cancel when the warning comes after it
            self.signal_name = name
        logger.warning("received %s: saving a checkpoint at the next step boundary, then exiting%s", name,
                       " as cancelled" if self.cancelled else " to be requeued")

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or self.stop_file.exists()

    @property
    def cancelled(self) -> bool:
        return self.signal_name == CANCEL_SIGNAL or self._stop_file_text() == CANCEL_SIGNAL

    @property
    def reason(self) -> str | None:
        """The signal that asked for the stop (a forwarded one from the STOP file), None if none did."""
        if self.cancelled:
            return CANCEL_SIGNAL
        if self.signal_name:
            return self.signal_name
        return (self._stop_file_text() or "SIGUSR1") if self.stop_file.exists() else None

    def _stop_file_text(self) -> str:
        try:
            return self.stop_file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def stop(self, checkpoint: str | None, global_step: int) -> TrainingPreempted:
        return stop_exception(checkpoint, global_step, self.reason)


class PreemptionCallback(TrainerCallback):
    """Turns a stop request into save-and-stop at the end of the current optimizer step."""

    def __init__(self, watcher: PreemptionWatcher) -> None:
        self.watcher = watcher
        self.stopped_at: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if _agreed(self.watcher.requested) and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


def _agreed(local: bool) -> bool:
    """True on every rank when any rank was asked to stop (ranks must save at the same step)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return local
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1 if local else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
