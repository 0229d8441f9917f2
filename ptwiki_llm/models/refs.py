"""Model references: which configured model a name means, where its local folder is, its tokenizer.

Every load reads local files; the Hub is used only where it is reachable, HF_HUB_OFFLINE is not
set and config allows downloads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ptwiki_llm.assets import find_staged, hub_offline
from ptwiki_llm.config import Config, ModelRef
from ptwiki_llm.errors import AssetMissingError

logger = logging.getLogger(__name__)


class ModelNotStagedError(AssetMissingError, FileNotFoundError):
    pass


def model_ref(config: Config, name: str) -> ModelRef:
    """'base', 'embedder', or the ``name`` of one of them."""
    refs = {"base": config.models.base, "embedder": config.models.embedder}
    if name in refs:
        return refs[name]
    for ref in refs.values():
        if ref.name == name:
            return ref
    raise KeyError(f"unknown model {name!r}: expected one of {sorted(refs)} or a configured model name")


def local_model_dir(ref: ModelRef, config: Config) -> Path | None:
    """A folder with the model's files: the configured path, then the model store."""
    if ref.path:
        staged = find_staged(ref.path, config)
        if staged is not None:
            return staged
    stored = config.model_store / ref.name
    return stored if stored.is_dir() else None


def is_explicit_path(name: str) -> bool:
    """A path the user wrote as one (absolute, ./, ../, ~), as opposed to an asset name."""
    return Path(name).is_absolute() or name.startswith((".", "~"))


def check_given_path(ref: ModelRef, config: Config) -> None:
    """A model path written as a path must exist: it is never replaced by a Hub download."""
    if ref.path and is_explicit_path(ref.path) and find_staged(ref.path, config) is None:
        raise ModelNotStagedError(
            f"model {ref.name!r}: path {ref.path!r} does not exist",
            "Check the path (models.<name>.path); nothing is downloaded for a path you named",
        )


def require_model_dir(ref: ModelRef, config: Config) -> Path:
    check_given_path(ref, config)
    found = local_model_dir(ref, config)
    if found is None:
        where = [ref.path] if ref.path else []
        where.append(str(config.model_store / ref.name))
        raise ModelNotStagedError(
            f"model {ref.name!r} is not staged (looked for {', '.join(where)}; asset path: "
            f"{config.asset_path or 'unset'}). Set PTWIKI_ASSET_PATH to the folder holding staged assets, "
            f"or copy/download {ref.hub_id or ref.name} into {config.model_store / ref.name} where internet exists."
        )
    return found


def load_tokenizer(ref: ModelRef, config: Config) -> Any:
    """The model's tokenizer from local files, or from the Hub when allowed and reachable."""
    from transformers import AutoTokenizer

    folder = local_model_dir(ref, config)
    if folder is not None:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    check_given_path(ref, config)
    if ref.hub_id and config.allow_hub_download and not hub_offline():
        logger.warning("model %r is not staged: DOWNLOADING the tokenizer of %s from the Hugging Face Hub",
                       ref.name, ref.hub_id)
        return AutoTokenizer.from_pretrained(ref.hub_id, revision=ref.revision)
    require_model_dir(ref, config)  # raises with the full explanation
    raise AssertionError("unreachable")


def token_counter(ref: ModelRef, config: Config):
    """A function mapping a batch of texts to their token counts with ``ref``'s tokenizer."""
    tokenizer = load_tokenizer(ref, config)

    def count(texts: list[str]) -> list[int]:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    return count
