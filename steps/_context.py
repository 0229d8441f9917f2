"""What every step needs from ZenML: the pipeline run id (to find the MLflow parent run)."""

from __future__ import annotations


def pipeline_run_id() -> str | None:
    from zenml import get_step_context

    try:
        return str(get_step_context().pipeline_run.id)
    except RuntimeError:  # called outside a running step
        return None
