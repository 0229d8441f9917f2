"""What a pipeline step hands the next one: a small frozen pydantic model, read by attribute.

Each step's output class (``IngestResult``, ``ValidationResult``, ``FormattedData``, ``TrainResult``,
``RegisteredAdapter``, ``RagIndex``, ``EvaluationReport``) derives from ``StepArtifact`` and is defined
next to the code that produces it. ZenML stores one as JSON (``steps/_materializer.py``), lists its
scalar fields as the artifact's metadata and shows the whole document in the dashboard.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

# Dotted depth of the fields listed as metadata (``counts.read``, ``heldout.tuned.perplexity``); deeper
# tables (metrics per arm and interval) stay in the JSON document.
METADATA_DEPTH = 3


class StepArtifact(BaseModel):
    """A step's output: unknown fields are an error, so a producer and its consumers cannot drift apart."""

    # NaN (an interval over empty resamples) survives the JSON round trip as the NaN constant
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    def metadata(self) -> dict[str, str | int | float | bool]:
        """The scalar fields by dotted name, down to ``METADATA_DEPTH`` levels (lists, None and NaN left out)."""
        flat: dict[str, str | int | float | bool] = {}
        _flatten(self.model_dump(mode="json"), "", 1, flat)
        return flat


def _flatten(value: Any, prefix: str, depth: int, out: dict[str, str | int | float | bool]) -> None:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            if depth < METADATA_DEPTH:
                _flatten(item, name + ".", depth + 1, out)
        elif isinstance(item, str | bool | int) or (isinstance(item, float) and math.isfinite(item)):
            out[name] = item
