from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.ingest import IngestResult
from ptwiki_llm.data.validate import ValidationResult
from ptwiki_llm.stages import validate_stage
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def validate(config: dict[str, Any], articles: IngestResult) -> Annotated[ValidationResult, "validated"]:
    """Great Expectations suite on per-article features; quarantine; fail over the threshold."""
    return validate_stage(stage_config(config), articles, pipeline_run_id())
