"""The ptwiki pipeline: ingest -> validate -> format (train, register, index, evaluate join later).

``data_pipeline`` is the data half on its own; ``ptwiki_pipeline`` is the whole pipeline that
``ptwiki-llm run`` starts. Both take the resolved config, split per step so each step's cache key
holds only the settings it depends on.
"""

from __future__ import annotations

from typing import Any

from zenml import pipeline
from zenml.enums import ExecutionMode

from steps.format import format_examples
from steps.ingest import ingest
from steps.validate import validate


def _data_steps(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> Any:
    articles = ingest(config=stage_configs["ingest"], input_fingerprint=input_fingerprint)
    validated = validate(config=stage_configs["validate"], articles=articles)
    return format_examples(config=stage_configs["format"], validated=validated)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def data_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> None:
    _data_steps(stage_configs, input_fingerprint)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.STOP_ON_FAILURE)
def ptwiki_pipeline(stage_configs: dict[str, dict[str, Any]], input_fingerprint: dict[str, Any]) -> None:
    _data_steps(stage_configs, input_fingerprint)
