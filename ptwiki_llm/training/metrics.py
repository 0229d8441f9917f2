"""Training metrics: loss, eval loss, perplexity, tokens/s, step time, peak memory -> JSONL + MLflow.

The JSONL log in the run folder survives preemption: a resumed run drops entries past the checkpoint it
resumes from and appends, so the log (and the MLflow curves, which are replayed from it) continue.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"


class MlflowSink:
    """Logs to one MLflow run by id (no active-run state: works in a torchrun rank as well)."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.client = None
        if run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient()

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.client is None or not values:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in sorted(values.items())
                 if isinstance(value, int | float) and math.isfinite(value)]
        self.client.log_batch(self.run_id, metrics=batch)


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated by torch on CUDA; peak resident set size of the process on CPU."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_log(path: Path, last_step: int) -> list[dict[str, Any]]:
    """Keep entries up to ``last_step`` (the checkpoint resumed from); returns them."""
    kept = [entry for entry in read_log(path) if entry["step"] <= last_step]
    path.write_text("".join(json.dumps(entry) + "\n" for entry in kept), encoding="utf-8")
    return kept


class MetricsCallback(TrainerCallback):
    def __init__(self, log_path: Path, sink: MlflowSink, device: str) -> None:
        self.log_path = log_path
        self.sink = sink
        self.device = device
        self.step_seconds = 0.0  # pure optimizer-step time of this process (no eval, no checkpoint saves)
        self.steps_timed = 0
        self.tokens_timed = 0
        self._step_start = 0.0
        self._tokens_at_start = 0
        self._window_seconds = 0.0
        self._window_tokens = 0
        self._window_steps = 0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_start = time.perf_counter()
        self._tokens_at_start = state.num_input_tokens_seen

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        elapsed = time.perf_counter() - self._step_start
        tokens = state.num_input_tokens_seen - self._tokens_at_start
        self.step_seconds += elapsed
        self.steps_timed += 1
        self.tokens_timed += tokens
        self._window_seconds += elapsed
        self._window_tokens += tokens
        self._window_steps += 1

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        entry: dict[str, Any] = {"step": state.global_step, "time": time.time()}
        for key, value in logs.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                entry[_metric_key(key)] = float(value)
        if "eval_loss" in logs:
            entry["eval.perplexity"] = math.exp(min(float(logs["eval_loss"]), 50.0))
        if "loss" in logs and self._window_steps:
            entry["train.step_time_s"] = self._window_seconds / self._window_steps
            # tokens of all ranks (num_input_tokens_seen is gathered) per second of this rank's step time
            entry["train.tokens_per_s"] = self._window_tokens / max(self._window_seconds, 1e-9)
            entry["train.peak_memory_mb"] = peak_memory_mb(self.device)
            self._window_seconds, self._window_tokens, self._window_steps = 0.0, 0, 0
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        self.sink.metrics({k: v for k, v in entry.items() if k not in ("step", "time")}, state.global_step)


_RENAMES = {"loss": "train.loss", "grad_norm": "train.grad_norm", "learning_rate": "train.learning_rate",
            "epoch": "train.epoch", "num_input_tokens_seen": "train.tokens_seen", "eval_loss": "eval.loss",
            # the Trainer's running totals, in every log line of transformers 5
            "train_runtime": "train.runtime_s", "train_tokens_per_second": "train.trainer_tokens_per_s"}


def _metric_key(key: str) -> str:
    if key in _RENAMES:
        return _RENAMES[key]
    if key.startswith("eval_"):
        return "eval." + key.removeprefix("eval_")
    if key.startswith("train_"):  # the end-of-training summary (train_loss = mean loss over the run, ...)
        return "train.summary." + key.removeprefix("train_")
    return "train." + key  # TRL's entropy, mean_token_accuracy, num_tokens; total_flos
