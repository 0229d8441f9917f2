from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.stages import config_from_stage, index_stage
from steps._context import pipeline_run_id


@step
def index(config: dict[str, Any], validated: dict[str, Any],
          max_articles: int | None = None) -> Annotated[dict[str, Any], "rag_index"]:
    """Validated articles -> chunks -> embeddings -> vector store (resumable; LanceDB or Weaviate)."""
    return index_stage(config_from_stage(config), validated, pipeline_run_id(), max_articles=max_articles)
