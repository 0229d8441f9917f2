from __future__ import annotations

from typing import Annotated, Any

from zenml import step

from ptwiki_llm.data.ingest import IngestResult
from ptwiki_llm.stages import ingest_stage
from steps._context import pipeline_run_id, stage_config
from steps._materializer import StepArtifactMaterializer


@step(output_materializers=StepArtifactMaterializer)
def ingest(config: dict[str, Any], input_fingerprint: dict[str, Any]) -> Annotated[IngestResult, "articles"]:
    """Dump/snapshot/parquet -> parquet shards + manifest. ``input_fingerprint`` keys the cache."""
    del input_fingerprint  # only here so a changed input file invalidates the cache
    return ingest_stage(stage_config(config), pipeline_run_id())
