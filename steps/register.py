from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.registry import RegisteredAdapter
from ptwiki_llm.stages import config_from_stage, register_stage
from ptwiki_llm.training.result import TrainResult
from steps._context import pipeline_run_id
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def register(config: dict[str, Any], trained: TrainResult) -> Annotated[RegisteredAdapter, "registered"]:
    """The trained adapter -> a new MLflow registered-model version with alias 'challenger'."""
    return register_stage(config_from_stage(config), trained, pipeline_run_id())
