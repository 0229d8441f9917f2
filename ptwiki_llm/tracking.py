"""MLflow: one parent run per pipeline run, one nested run per step.

The parent is found (or created) by a tag holding the ZenML pipeline run id, not by process state, so
steps that run as separate processes or SLURM jobs all land under the same parent.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config
from ptwiki_llm.provenance import container_image, git_commit
from ptwiki_llm.run_owner import current_owner

# On the parent only: searching by it must never find a step's run.
PIPELINE_RUN_TAG = "ptwiki.pipeline_run_id"
STEP_TAG = "ptwiki.step"
STEP_PIPELINE_RUN_TAG = "ptwiki.zenml_run_id"
# The process that created the run (host, pid, start time): tells a live run from one whose process died.
OWNER_TAG = "ptwiki.owner"
# The hash of a step's config slice (ptwiki_llm.config_slice); on the parent, one tag per stage.
SLICE_TAG = "ptwiki.slice_sha256"

# Offline compute nodes: no telemetry calls from MLflow.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def store_exists(config: Config) -> bool:
    """False only for a sqlite store whose database file has not been created yet."""
    uri = config.mlflow_tracking_uri
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def setup(config: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    if config.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(config.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    experiment = mlflow.get_experiment_by_name(config.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if config.mlflow_tracking_uri.startswith("sqlite:"):
        # Artifacts beside the database, never in ./mlruns of whatever directory we were started from.
        config.mlflow_artifact_location.mkdir(parents=True, exist_ok=True)
        location = config.mlflow_artifact_location.as_uri()
    return mlflow.create_experiment(config.mlflow.experiment, artifact_location=location)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def lineage_tags(config: Config) -> dict[str, str]:
    """``ptwiki.config_sha256`` is ``Config.digest()`` of the config this process holds: on a step's run, the
    step's config (its slice, the sections it does not declare at their defaults); the runner overwrites it on
    the parent with the whole run config's (``_log_config``)."""
    tags = {"ptwiki.preset": config.preset, "ptwiki.config_sha256": config.digest()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["ptwiki.git_commit"] = commit
    image = container_image()
    if image:
        tags["ptwiki.container_runtime"] = image.get("runtime", "")
        tags["ptwiki.container_image"] = image.get("image", "")
        tags["ptwiki.container_digest"] = image.get("digest", "")
        if image.get("lock_sha256"):
            tags["ptwiki.container_lock_sha256"] = image["lock_sha256"]
    return tags


def parent_run_id(config: Config, pipeline_run_id: str, run_name: str | None = None,
                  log_config: bool = False) -> str:
    """The MLflow run standing for ZenML pipeline run ``pipeline_run_id`` (created on first use).

    Steps may run at once (SLURM jobs of independent steps); when two create a parent together,
    both keep the oldest and the other is deleted, so a pipeline run always has exactly one parent.
    ``log_config``: record the config as the parent's parameters; only the runner does, with the whole
    config (a step holds a slice of it, the other sections at their defaults).
    """
    from mlflow.tracking import MlflowClient

    experiment_id = setup(config)
    client = MlflowClient()
    found = _parents(client, experiment_id, pipeline_run_id)
    if found:
        parent = found[0]
    else:
        tags = {PIPELINE_RUN_TAG: pipeline_run_id, **lineage_tags(config), OWNER_TAG: json.dumps(current_owner())}
        created = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        parent = _parents(client, experiment_id, pipeline_run_id)[0]
        if parent != created:
            client.delete_run(created)
    if run_name:  # a step may have created it before the pipeline run's name was at hand
        client.set_tag(parent, "mlflow.runName", run_name)
    if log_config:
        _log_config(client, parent, config)
    return parent


def _parents(client: Any, experiment_id: str, pipeline_run_id: str) -> list[str]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}'")
    return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))]


def _log_config(client: Any, run_id: str, config: Config) -> None:
    """The whole run config: parameters, a JSON artifact, its hash and the hash of every stage's slice."""
    from mlflow.entities import Param

    from ptwiki_llm.config_slice import STAGE_SECTIONS, slice_sha256

    client.set_tag(run_id, "ptwiki.config_sha256", config.digest())  # a step that created the parent set its own
    for stage in STAGE_SECTIONS:
        client.set_tag(run_id, f"{SLICE_TAG}.{stage}", slice_sha256(config, stage))
    existing = client.get_run(run_id).data.params
    params = [Param(key, _param_value(value)) for key, value in sorted(flatten(config.to_dict()).items())
              if key not in existing]
    for start in range(0, len(params), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=params[start : start + 100])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"config-{config.digest()[:12]}.json"
        path.write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
        client.log_artifact(run_id, str(path), artifact_path="config")


def finish_parent(config: Config, pipeline_run_id: str, status: str = "FINISHED") -> None:
    from mlflow.tracking import MlflowClient

    experiment_id = setup(config)
    client = MlflowClient()
    for run_id in _parents(client, experiment_id, pipeline_run_id)[:1]:
        client.set_terminated(run_id, status=status)


def metric_name(name: str) -> str:
    """MLflow accepts only alphanumerics and ``_-. :/`` in names."""
    return re.sub(r"[^\w\-. :/]", "_", name).strip("_")


def _param_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)
    return text[:6000]  # MLflow's param length limit


@contextmanager
def step_run(config: Config, step: str, pipeline_run_id: str | None = None) -> Iterator[Any]:
    """A nested MLflow run for one step (a top-level run when there is no pipeline run)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.config_slice import STAGE_SECTIONS, slice_sha256

    experiment_id = setup(config)
    tags = {STEP_TAG: step, **lineage_tags(config), OWNER_TAG: json.dumps(current_owner())}
    if step in STAGE_SECTIONS:
        tags[SLICE_TAG] = slice_sha256(config, step)
    if pipeline_run_id:
        parent = parent_run_id(config, pipeline_run_id)
        tags["mlflow.parentRunId"] = parent
        tags[STEP_PIPELINE_RUN_TAG] = pipeline_run_id
    child = MlflowClient().create_run(experiment_id, run_name=step, tags=tags)
    with mlflow.start_run(run_id=child.info.run_id) as run:
        yield run


def log_json(value: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(value, indent=2, ensure_ascii=False, default=str), artifact_file)


def log_dataset_manifest(manifest: dict[str, Any], manifest_path: Path, name: str, context: str) -> None:
    """Record a manifest as the run's dataset input (source = the input dump, digest = data hash)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    inputs = manifest.get("inputs") or [{"path": str(manifest_path)}]
    with warnings.catch_warnings():
        # a local path matches two registered source kinds that are the same class; harmless
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(inputs[0]["path"])
    dataset = MetaDataset(source=source, name=name, digest=manifest["dataset_sha256"][:16])
    mlflow.log_input(dataset, context=context, tags={"manifest": str(manifest_path)})
