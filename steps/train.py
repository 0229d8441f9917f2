from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.stages import config_from_stage, train_stage
from steps._context import pipeline_run_id


@step
def train(config: dict[str, Any], formatted: dict[str, Any]) -> Annotated[dict[str, Any], "trained"]:
    """Formatted JSONL -> LoRA/QLoRA adapter; exits with code 75 after a checkpoint when preempted."""
    return train_stage(config_from_stage(config), formatted, pipeline_run_id())
