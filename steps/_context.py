"""What every step needs from ZenML: the pipeline run id (to find the MLflow parent run) and its config."""

from __future__ import annotations

from typing import Any

from ptwiki_llm.cache_keys import EXTERNAL_STATE
from ptwiki_llm.config import Config
from ptwiki_llm.config_slice import config_from_stage
from ptwiki_llm.provenance import sha256_json


def pipeline_run_id() -> str | None:
    from zenml import get_step_context

    try:
        return str(get_step_context().pipeline_run.id)
    except RuntimeError:  # called outside a running step
        return None


def stage_config(part: dict[str, Any]) -> Config:
    """The step's Config from its slice (undeclared sections raise when read); the slice's hash goes on the
    step run as ZenML metadata ``config_slice_sha256`` (config_slice.slice_sha256 of the run's config)."""
    from zenml import log_metadata

    if pipeline_run_id() is not None:
        log_metadata(metadata={"config_slice_sha256": sha256_json(
            {key: value for key, value in part.items() if key != EXTERNAL_STATE})})
    return config_from_stage(part)
