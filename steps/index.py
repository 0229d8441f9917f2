from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.validate import ValidationResult
from ptwiki_llm.rag.index import RagIndex
from ptwiki_llm.stages import index_stage
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def index(config: dict[str, Any], validated: ValidationResult,
          max_articles: int | None = None) -> Annotated[RagIndex, "rag_index"]:
    """Validated articles -> chunks -> embeddings -> vector store (resumable; LanceDB or Weaviate)."""
    return index_stage(stage_config(config), validated, pipeline_run_id(), max_articles=max_articles)
