"""The train step's output: the adapter, what it was trained on and how the run went (no torch import)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ptwiki_llm.artifacts import StepArtifact


class BaseWeights(StepArtifact):
    """What an adapter was trained on: the staged base folder, its content hash and origin."""

    name: str | None
    path: str | None = None
    weights_sha256: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    source: dict[str, Any] = Field(default_factory=dict)


class HeldoutScore(StepArtifact):
    """A model's score on raw held-out article text (training.heldout.heldout_metrics)."""

    loss: float
    perplexity: float
    bits_per_byte: float
    tokens: float
    bytes: float


class HeldoutComparison(StepArtifact):
    base: HeldoutScore | None = None
    tuned: HeldoutScore | None = None


class TrainMetrics(StepArtifact):
    global_step: int
    resumed_from_step: int
    train_runtime_s: float | None
    train_loss_mean: float | None
    tokens_this_session: int
    tokens_per_s: float | None
    """Optimizer-step time only (no eval, no checkpoint saves)."""
    step_time_s: float | None
    tokens_per_s_wall: float | None
    """The Trainer's loop wall time, eval and saves included."""
    peak_memory_mb: float
    model_load_s: float
    last_eval_loss: float | None


class TrainResult(StepArtifact):
    """The train step's output (also ``run_dir/result.json``): the adapter and how it was made."""

    status: Literal["completed"]
    run_dir: str
    adapter_dir: str
    base: BaseWeights
    train: str
    eval: str | None
    dataset_sha256: str | None
    train_sha256: str | None
    eval_sha256: str | None
    config_sha256: str
    train_config: dict[str, Any]
    device: str
    dtype: str
    mixed_precision: str
    world_size: int
    examples: dict[str, int]
    metrics: TrainMetrics
    heldout: HeldoutComparison
    mlflow_run_id: str | None
