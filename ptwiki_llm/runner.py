"""Start a ZenML pipeline run for a config and collect what its steps produced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from ptwiki_llm import tracking
from ptwiki_llm.cache_keys import (
    EXTERNAL_STATE,
    export_locations,
    index_cache_state,
    record_index_state,
    record_registry_state,
    recorded_index,
    registry_cache_state,
)
from ptwiki_llm.config import Config
from ptwiki_llm.config_slice import STAGE_SECTIONS, config_for_stage
from ptwiki_llm.hpc.detached import DETACH_EXTRA, detach_extra, hand_over_parent, submitted_run_dir
from ptwiki_llm.hpc.services import apply_services
from ptwiki_llm.hpc.stack import run_options
from ptwiki_llm.run_owner import current_owner
from ptwiki_llm.stages import input_fingerprint
from ptwiki_llm.stale_runs import OWNER_EXTRA
from ptwiki_llm.step_failures import failure_cause
from ptwiki_llm.zenml_env import prepare_zenml, record_run_config

PIPELINES = ("data", "full", "index", "evaluate")


@dataclass
class RunSummary:
    pipeline: str
    run_id: str
    run_name: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    cached_steps: list[str] = field(default_factory=list)
    mlflow_parent_run_id: str | None = None


def run_pipeline(config: Config, which: str = "full", *, detach: bool = False, **pipeline_args: Any) -> RunSummary:
    """Run a pipeline and collect its outputs; ``detach`` (SLURM): submit its jobs and return (hpc.detached)."""
    if which not in PIPELINES:
        raise ValueError(f"unknown pipeline {which!r}: expected one of {PIPELINES}")
    config = apply_services(config)  # hpc.services: server URLs from infra/ (before zenml is imported)
    prepare_zenml(config)
    from zenml.enums import ExecutionMode, ExecutionStatus

    from pipelines.ptwiki import data_pipeline, evaluate_pipeline, index_pipeline, ptwiki_pipeline

    export_locations(config)  # service URLs reach the steps by environment, outside their cache keys
    stage_configs = {stage: config_for_stage(config, stage) for stage in STAGE_SECTIONS}
    if which in ("full", "evaluate"):  # the registry: state outside the config register/evaluate depend on
        registry = registry_cache_state(config)
        stage_configs["register"][EXTERNAL_STATE] = {"registry_created": registry["created"],
                                                     "token": registry["token"]}
        stage_configs["evaluate"][EXTERNAL_STATE] = {"registry": registry}
        if which == "evaluate":  # without an index step, evaluate reads the last index recorded
            stage_configs["evaluate"][EXTERNAL_STATE]["index"] = recorded_index(config)
    if which in ("full", "index"):  # the vector store's contents: index's output depends on them
        stage_configs["index"][EXTERNAL_STATE] = {"store": index_cache_state(config)}
    fingerprint = input_fingerprint(config)
    chosen = {"full": ptwiki_pipeline, "data": data_pipeline, "index": index_pipeline,
              "evaluate": evaluate_pipeline}[which]
    arguments = {"stage_configs": stage_configs, "input_fingerprint": fingerprint, **pipeline_args}
    # hpc.orchestrator picks the stack (local, or SLURM jobs) and per-step job settings
    stack_options = run_options(config, chosen, arguments)
    # a name only this invocation uses: a failure is pinned on this run, never on another (user's) latest one
    run_name = invocation_run_name(chosen.name)
    # the owner (host, pid) lets a later run tell this one, if left RUNNING, from a live one (stale_runs)
    extra: dict[str, Any] = {OWNER_EXTRA: current_owner()}
    if detach:  # what the follower jobs need to close the run once its jobs end
        extra[DETACH_EXTRA] = detach_extra(config, stage_configs["index"].get(EXTERNAL_STATE, {}).get("store"),
                                           stage_configs["evaluate"].get(EXTERNAL_STATE, {}).get("registry"))
    chosen = chosen.with_options(enable_cache=config.zenml.enable_cache, run_name=run_name,
                                 execution_mode=ExecutionMode(config.zenml.execution_mode),
                                 extra=extra, **stack_options)
    logging.getLogger("zenml").setLevel(logging.WARNING)
    failed: BaseException | None = None
    try:
        run = chosen(**arguments)
    except BaseException as exc:  # mark the MLflow parent failed, then re-raise
        failed = exc
        run = _run_named(run_name)
    if run is None:
        raise failed or RuntimeError("the pipeline did not start a run")
    run_id = str(run.id)
    parent = tracking.parent_run_id(config, run_id, run_name=run.name, log_config=True)
    # a detached run's jobs run on: its finish job closes the parent (every step cached: nothing was submitted)
    submitted = detach and not failed and submitted_run_dir(config, run_id) is not None
    if not submitted:
        tracking.finish_parent(config, run_id, "FAILED" if failed else "FINISHED")
    if failed:
        raise failure_cause(run, failed)
    record_run_config(run_id, config)
    if submitted:
        hand_over_parent(config, parent, submitted_run_dir(config, run_id))
        return RunSummary(pipeline=chosen.name, run_id=run_id, run_name=run.name, status="submitted",
                          mlflow_parent_run_id=parent)
    if which in ("full", "index"):
        record_index_state(config, stage_configs["index"][EXTERNAL_STATE]["store"])
    if which in ("full", "evaluate"):
        record_registry_state(config, stage_configs["evaluate"][EXTERNAL_STATE]["registry"])
    summary = RunSummary(
        pipeline=chosen.name, run_id=run_id, run_name=run.name, status=str(run.status),
        mlflow_parent_run_id=parent,
    )
    for name, step in run.steps.items():
        if step.status == ExecutionStatus.CACHED:
            summary.cached_steps.append(name)
        for output_name, artifacts in step.outputs.items():
            summary.outputs[output_name] = artifacts[0].load()
    return summary


def invocation_run_name(pipeline_name: str) -> str:
    """``<pipeline>-<UTC date>-<time>-<8 random hex>``: ZenML's default name plus a token of this invocation."""
    return f"{pipeline_name}-{datetime.now(UTC):%Y_%m_%d-%H_%M_%S}-{uuid4().hex[:8]}"


def _run_named(run_name: str) -> Any:
    """The run this invocation created, or None when it failed before ZenML created one."""
    from zenml.client import Client

    runs = Client().list_pipeline_runs(name=run_name, size=1)
    return runs.items[0] if runs.items else None
