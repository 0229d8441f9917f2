from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.stages import config_from_stage, evaluate_stage
from steps._context import pipeline_run_id


@step
def evaluate(config: dict[str, Any], validated: dict[str, Any], formatted: dict[str, Any],
             registered: dict[str, Any] | None = None,
             rag_index: dict[str, Any] | None = None) -> Annotated[dict[str, Any], "evaluation"]:
    """Arms base / base+rag / ft / ft+rag / champion: report, intervals, MLflow metrics, promotion gate.

    Without ``registered``/``rag_index`` (``ptwiki-llm evaluate``) it reads the registry's challenger and
    the last index."""
    return evaluate_stage(config_from_stage(config), validated, formatted, registered, rag_index, pipeline_run_id())
