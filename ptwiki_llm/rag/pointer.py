"""Which collection ``ask`` should query: the last one indexed, recorded in the workdir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ptwiki_llm.config import Config
from ptwiki_llm.errors import PrerequisiteMissingError

if TYPE_CHECKING:
    from ptwiki_llm.rag.index import RagIndex


class NoIndexError(PrerequisiteMissingError, FileNotFoundError):
    """``ask``/``compare`` with RAG before ``index`` has built a collection."""


def pointer_path(config: Config) -> Path:
    return config.workdir_path / "rag" / f"current-{config.rag.store.backend}.json"


def write_pointer(config: Config, index: RagIndex) -> Path:
    path = pointer_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def current_collection(config: Config) -> str:
    """rag.store.collection when set, else the collection the last `index` run wrote."""
    if config.rag.store.collection:
        return config.rag.store.collection
    path = pointer_path(config)
    if not path.is_file():
        raise NoIndexError(
            f"no index recorded for backend {config.rag.store.backend!r} in {path}",
            "Run `ptwiki-llm index` first, or name a collection with --set rag.store.collection=NAME",
        )
    return json.loads(path.read_text(encoding="utf-8"))["collection"]
