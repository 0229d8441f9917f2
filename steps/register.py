from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.registry import RegisteredAdapter
from ptwiki_llm.stages import register_stage
from ptwiki_llm.training.result import TrainResult
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def register(config: dict[str, Any], trained: TrainResult) -> Annotated[RegisteredAdapter, "registered"]:
    """The trained adapter -> a new MLflow registered-model version with alias 'challenger'."""
    return register_stage(stage_config(config), trained, pipeline_run_id())
