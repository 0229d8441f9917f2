from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.stages import config_from_stage, register_stage
from steps._context import pipeline_run_id


@step
def register(config: dict[str, Any], trained: dict[str, Any]) -> Annotated[dict[str, Any], "registered"]:
    """The trained adapter -> a new MLflow registered-model version with alias 'challenger'."""
    return register_stage(config_from_stage(config), trained, pipeline_run_id())
