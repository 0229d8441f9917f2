from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.format import FormattedData
from ptwiki_llm.stages import train_stage
from ptwiki_llm.training.result import TrainResult
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def train(config: dict[str, Any], formatted: FormattedData) -> Annotated[TrainResult, "trained"]:
    """Formatted JSONL -> LoRA/QLoRA adapter; exits with code 75 after a checkpoint when preempted."""
    return train_stage(stage_config(config), formatted, pipeline_run_id())
