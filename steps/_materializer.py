"""How ZenML stores a step's output: ZenML's pydantic materializer (JSON document, shown in the dashboard),
plus the model's scalar fields as the artifact's metadata (``zenml artifact version describe``, the
dashboard's metadata tab)."""

from __future__ import annotations

from typing import Any, ClassVar

from zenml.materializers.pydantic_materializer import PydanticMaterializer

from ptwiki_llm.artifacts import StepArtifact


class StepArtifactMaterializer(PydanticMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (StepArtifact,)

    def extract_metadata(self, data: StepArtifact) -> dict[str, Any]:
        return {**super().extract_metadata(data), **data.metadata()}
