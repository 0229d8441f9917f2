from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.format import FormattedData
from ptwiki_llm.data.validate import ValidationResult
from ptwiki_llm.evaluation.run import EvaluationReport
from ptwiki_llm.rag.index import RagIndex
from ptwiki_llm.registry import RegisteredAdapter
from ptwiki_llm.stages import evaluate_stage
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def evaluate(config: dict[str, Any], validated: ValidationResult, formatted: FormattedData,
             registered: RegisteredAdapter | None = None,
             rag_index: RagIndex | None = None) -> Annotated[EvaluationReport, "evaluation"]:
    """Arms base / base+rag / ft / ft+rag / champion: report, intervals, MLflow metrics, promotion gate.

    Without ``registered``/``rag_index`` (``ptwiki-llm evaluate``) it reads the registry's challenger and
    the last index."""
    return evaluate_stage(stage_config(config), validated, formatted, registered, rag_index, pipeline_run_id())
