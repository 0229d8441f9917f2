"""Fixtures for the evaluation tests: the real SmolLM2 (staged once), the real E5 embedder and article corpus."""

from __future__ import annotations

from tests.rag.conftest import corpus, e5_dir  # noqa: F401 - fixtures shared with the RAG tests
from tests.training.conftest import model_store  # noqa: F401 - the GGUF converted once per session
