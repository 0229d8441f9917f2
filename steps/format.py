from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.format import FormattedData
from ptwiki_llm.data.validate import ValidationResult
from ptwiki_llm.stages import format_stage
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def format_examples(config: dict[str, Any], validated: ValidationResult) -> Annotated[FormattedData, "formatted"]:
    """Validated articles -> train/eval JSONL ({"text": ...} per line) + token statistics."""
    return format_stage(stage_config(config), validated, pipeline_run_id())
