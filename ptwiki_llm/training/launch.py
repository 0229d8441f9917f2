"""Run training in this process, or in ``num_processes`` torchrun ranks (DDP/FSDP) on this node.

The ranks run ``python -m ptwiki_llm.training`` (the same entry point a multi-node SLURM job starts
under ``srun torchrun``); this process forwards SIGUSR1/SIGTERM to them through the run folder's STOP
file (its text names the signal) and reads rank 0's result. torchrun's own exit status cannot tell
preemption from failure, so the result file's ``status`` decides; a SIGTERM this process received makes
the stop a cancel whatever the ranks saw.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm.config import Config
from ptwiki_llm.training.preemption import CANCEL_SIGNAL, PREEMPT_SIGNALS, STOP_FILE, stop_exception
from ptwiki_llm.training.trainer import RESULT_FILE, TrainResult, run_dir_for, run_training

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData

logger = logging.getLogger(__name__)


def train_adapter(config: Config, formatted: FormattedData, mlflow_run_id: str | None = None,
                  show_progress: bool = True) -> TrainResult:
    if config.train.num_processes == 1 or "LOCAL_RANK" in os.environ:
        return run_training(config, formatted, mlflow_run_id, show_progress)
    return launch_ranks(config, formatted, mlflow_run_id)


def torchrun_command(config_file: Path, formatted_file: Path, num_processes: int,
                     mlflow_run_id: str | None) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
               "-m", "ptwiki_llm.training", "--config-json", str(config_file), "--formatted-json",
               str(formatted_file), "--no-progress"]
    if mlflow_run_id:
        command += ["--mlflow-run-id", mlflow_run_id]
    return command


def launch_ranks(config: Config, formatted: FormattedData, mlflow_run_id: str | None) -> TrainResult:
    run_dir = run_dir_for(config, formatted)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    stop_file = run_dir / STOP_FILE
    with tempfile.TemporaryDirectory(prefix="ptwiki-launch-") as tmp:
        config_file, formatted_file = Path(tmp) / "config.json", Path(tmp) / "formatted.json"
        config_file.write_text(json.dumps(config.to_dict()), encoding="utf-8")
        formatted_file.write_text(formatted.model_dump_json(), encoding="utf-8")
        command = torchrun_command(config_file, formatted_file, config.train.num_processes, mlflow_run_id)
        env = dict(os.environ)
        if "OMP_NUM_THREADS" not in env:  # torchrun would pin 1 thread per rank; share the cores instead
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // config.train.num_processes))
        logger.info("launching %d ranks: %s", config.train.num_processes, " ".join(command))
        process = subprocess.Popen(command, env=env)
        received: list[str] = []
        forwarded = _forward_signals(stop_file, received)
        try:
            returncode = process.wait()
        finally:
            _restore(forwarded)
    # rank 0's result.json: a TrainResult when completed, else {status, checkpoint, global_step, signal}
    result_path = run_dir / RESULT_FILE
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
    if result and result.get("status") in ("preempted", "cancelled"):
        reason = CANCEL_SIGNAL if CANCEL_SIGNAL in received or result["status"] == "cancelled" else "SIGUSR1"
        raise stop_exception(result.get("checkpoint"), result.get("global_step", 0), reason)
    if returncode != 0 or not result or result.get("status") != "completed":
        raise RuntimeError(f"distributed training failed (torchrun exit code {returncode}); see the ranks' "
                           f"output above and {run_dir}")
    return TrainResult.model_validate(result)


def _forward_signals(stop_file: Path, received: list[str]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.warning("received %s: asking the ranks to checkpoint and stop", name)
        received.append(name)
        # a cancel stays a cancel: the warning that may follow it must not turn it into a requeue
        stop_file.write_text(CANCEL_SIGNAL if CANCEL_SIGNAL in received else name, encoding="utf-8")

    return {sig: signal.signal(sig, request_stop) for sig in PREEMPT_SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
