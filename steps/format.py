from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.stages import config_from_stage, format_stage
from steps._context import pipeline_run_id


@step
def format_examples(config: dict[str, Any], validated: dict[str, Any]) -> Annotated[dict[str, Any], "formatted"]:
    """Validated articles -> train/eval JSONL ({"text": ...} per line) + token statistics."""
    return format_stage(config_from_stage(config), validated, pipeline_run_id())
