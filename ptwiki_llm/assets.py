"""Resolve named data and model assets: a path, then the asset path, then (online) the Hub.

The asset path is a list of folders that hold staged assets laid out by name, e.g. a folder with
``data/ptwiki_namespace_0_sample.tar.gz`` and ``models/smollm2-135m-instruct-gguf/``. It comes from
config ``asset_path`` or ``PTWIKI_ASSET_PATH`` (``:``-separated). Nothing here has a built-in
default folder: offline machines must say where their assets are.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ptwiki_llm.config import Config, HubDatasetFallback
from ptwiki_llm.errors import AssetMissingError

logger = logging.getLogger(__name__)


class AssetNotFoundError(AssetMissingError, FileNotFoundError):
    """An asset is neither a path, nor in the asset path, nor fetchable."""


# The Hugging Face libraries' switches for "never download": read here, set in SLURM jobs and by the registry.
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"} for var in OFFLINE_VARS)


def find_staged(name: str, config: Config) -> Path | None:
    """An existing path as given, or ``name`` inside the first asset folder that has it."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve() if candidate.exists() else None
    for folder in config.asset_path:
        staged = Path(folder) / name
        if staged.exists():
            return staged.resolve()
    return None


def _searched(name: str, config: Config) -> str:
    places = [str(Path(name).expanduser().resolve())]
    if not Path(name).expanduser().is_absolute():
        places += [str(Path(folder) / name) for folder in config.asset_path]
    return ", ".join(dict.fromkeys(places))


def default_data_source() -> str:
    """The built-in corpus name: the only ``data.source`` the Hub dataset may stand in for."""
    from ptwiki_llm.config import DataConfig

    return str(DataConfig.model_fields["source"].default)


def resolve_data_source(config: Config) -> Path:
    """The corpus input: staged file or folder, else (default sample only) a Hub download into the workdir.

    A source the user named (any value but the built-in sample) is used as given or refused: a typo
    must never be replaced by a different corpus.
    """
    name = config.data.source
    staged = find_staged(name, config)
    if staged is not None:
        return staged
    if name != default_data_source():
        raise AssetNotFoundError(
            f"data.source {name!r} does not exist (looked in: {_searched(name, config)})",
            "Check the path, or point data.source (--set data.source=... or PTWIKI_DATA__SOURCE) at a dump; "
            "nothing is downloaded for a source you named",
        )
    fallback = config.data.hub_fallback
    downloaded = _hub_dataset_cache_path(config, fallback) if fallback else None
    if downloaded is not None and downloaded.exists():
        logger.warning("data source %r is not staged: using the Hugging Face Hub copy downloaded earlier, %s",
                       name, downloaded)
        return downloaded
    if fallback is None or not config.allow_hub_download or hub_offline():
        why = (
            "Hub fallback disabled"
            if fallback is None or not config.allow_hub_download
            else "HF_HUB_OFFLINE is set"
        )
        raise AssetNotFoundError(
            f"data source {name!r} not found (looked in: {_searched(name, config)}; {why})",
            "Set PTWIKI_ASSET_PATH to the folder(s) holding staged assets (e.g. the project's "
            "'shared' folder), point PTWIKI_DATA__SOURCE at a dump, or run where the Hugging Face "
            "Hub is reachable",
        )
    return download_hub_dataset(config, fallback)


def hub_download_planned(config: Config) -> bool:
    """True when resolving the data source would start a Hub download (nothing staged, nothing cached)."""
    if find_staged(config.data.source, config) is not None or config.data.source != default_data_source():
        return False
    fallback = config.data.hub_fallback
    return fallback is not None and not _hub_dataset_cache_path(config, fallback).exists()


def _hub_dataset_cache_path(config: Config, fallback: HubDatasetFallback) -> Path:
    limit = fallback.max_articles if fallback.max_articles else "all"
    safe = f"{fallback.repo.replace('/', '__')}__{fallback.config}__{fallback.split}__{limit}"
    return config.workdir_path / "assets" / "hub" / f"{safe}.jsonl"


def download_hub_dataset(config: Config, fallback: HubDatasetFallback) -> Path:
    """Stream the Hub dataset (never the whole dump) into a JSONL file of extracted articles."""
    from datasets import load_dataset
    from rich.progress import Progress

    target = _hub_dataset_cache_path(config, fallback)
    logger.warning(
        "data source %r is not staged: DOWNLOADING %s (config %s, split %s, %s articles) from the Hugging Face Hub "
        "into %s instead", config.data.source, fallback.repo, fallback.config, fallback.split,
        fallback.max_articles or "all", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".jsonl.partial")
    stream = load_dataset(fallback.repo, fallback.config, split=fallback.split, streaming=True)
    if fallback.max_articles:
        stream = stream.take(fallback.max_articles)
    with partial.open("w", encoding="utf-8") as out, Progress() as progress:
        task = progress.add_task(f"downloading {fallback.repo} {fallback.config}", total=fallback.max_articles)
        for row in stream:
            record = {k: row.get(k) for k in ("id", "url", "title", "text")}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            progress.advance(task)
    partial.replace(target)  # only a complete download is ever used
    return target
