"""The ptwiki pipeline: ingest -> validate -> format -> train -> register, validate -> index, then evaluate.

``data_pipeline`` is the data half on its own; ``ptwiki_pipeline`` is the whole pipeline that
``ptwiki-llm run`` starts; ``index_pipeline`` and ``evaluate_pipeline`` are the stage commands, so their
heavy step runs where the configured orchestrator puts it. Both take the resolved config, split per
step so each step's cache key holds only the settings it depends on: changing ``rag`` re-runs index
and leaves the adapter served from ZenML's cache, and the other way round.
"""

from __future__ import annotations

from typing import Any

from zenml import pipeline
from zenml.enums import ExecutionMode

from steps.evaluate import evaluate
from steps.format import format_examples
from steps.index import index
from steps.ingest import ingest
from steps.register import register
from steps.train import train
from steps.validate import validate


def _data_steps(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> tuple[Any, Any]:
    articles = ingest(config=stage_configs["ingest"], input_fingerprint=input_fingerprint)
    validated = validate(config=stage_configs["validate"], articles=articles)
    return validated, format_examples(config=stage_configs["format"], validated=validated)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def data_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> None:
    _data_steps(stage_configs, input_fingerprint)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def ptwiki_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> None:
    validated, formatted = _data_steps(stage_configs, input_fingerprint)
    trained = train(config=stage_configs["train"], formatted=formatted)
    registered = register(config=stage_configs["register"], trained=trained)
    # index needs only the validated articles: on SLURM it runs beside train, on its own job
    rag_index = index(config=stage_configs["index"], validated=validated)
    evaluate(config=stage_configs["evaluate"], validated=validated, formatted=formatted, registered=registered,
             rag_index=rag_index)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def index_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any],
                   max_articles: int | None = None) -> None:
    """``ptwiki-llm index``: the data steps, then index (a job of its own on SLURM, never the login node)."""
    validated, _ = _data_steps(stage_configs, input_fingerprint)
    index(config=stage_configs["index"], validated=validated, max_articles=max_articles)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def evaluate_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> None:
    """``ptwiki-llm evaluate``: the data steps, then evaluate against the registry's challenger and the last index."""
    validated, formatted = _data_steps(stage_configs, input_fingerprint)
    evaluate(config=stage_configs["evaluate"], validated=validated, formatted=formatted)
