"""Staging: every causal LM is loaded from a plain HF folder in the model store, {store}/{name}, that holds
a stage manifest. A GGUF checkpoint is converted once (dequantized to fp32 safetensors); a local HF folder
is linked file by file; a Hub id is downloaded (only by `ptwiki-llm models stage`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptwiki_llm.assets import find_staged, hub_offline
from ptwiki_llm.config import Config, ModelRef
from ptwiki_llm.models.refs import ModelNotStagedError, check_given_path
from ptwiki_llm.provenance import sha256_file

logger = logging.getLogger(__name__)


STAGE_MANIFEST = "ptwiki_stage.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def stored_model_dir(ref: ModelRef, config: Config) -> Path:
    return config.model_store / ref.name


def stage_manifest(ref: ModelRef, config: Config) -> dict[str, Any] | None:
    path = stored_model_dir(ref, config) / STAGE_MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def weights_sha256(folder: Path) -> str:
    """One content hash over every weight file of a folder (names and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for path in _weight_files(folder):
        digest.update(path.name.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def _stage_source(ref: ModelRef, config: Config) -> tuple[str, Path | None]:
    """How ``ref`` can be staged from local files: ('gguf', folder), ('folder', folder) or ('hub', None)."""
    folder = find_staged(ref.path, config) if ref.path else None
    if folder is not None and folder.is_file() and folder.suffix == ".gguf":
        return "gguf", folder.parent
    if folder is not None and ref.gguf_file and (folder / ref.gguf_file).is_file():
        return "gguf", folder
    if folder is not None and folder.is_dir() and _weight_files(folder):
        return "folder", folder
    return "hub", None


@contextmanager
def _store_lock(config: Config, name: str) -> Iterator[None]:
    """Serialize staging of one model across processes (DDP ranks, parallel jobs on a shared store)."""
    config.model_store.mkdir(parents=True, exist_ok=True)
    with (config.model_store / f".{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_model(config: Config, ref: ModelRef | None = None, force: bool = False) -> Path:
    """Make ``ref`` (default: the base model) loadable from the model store; returns its folder.

    GGUF and local folders are staged from local files. A Hub id is downloaded only here, and only where
    the Hub is reachable, HF_HUB_OFFLINE is unset and ``allow_hub_download`` is true.
    """
    ref = ref or config.models.base
    target = stored_model_dir(ref, config)
    with _store_lock(config, ref.name):
        if not force and (target / STAGE_MANIFEST).is_file():
            return target
        kind, source = _stage_source(ref, config)
        if kind == "hub":
            check_given_path(ref, config)
        if kind == "hub" and (not ref.hub_id or not config.allow_hub_download or hub_offline()):
            why = ("no hub_id configured" if not ref.hub_id else
                   "allow_hub_download is false" if not config.allow_hub_download else "HF_HUB_OFFLINE is set")
            raise ModelNotStagedError(
                f"cannot stage model {ref.name!r}: no local copy (path {ref.path!r}, asset path "
                f"{config.asset_path or 'unset'}) and no download possible ({why}). Run `ptwiki-llm models stage` "
                f"where the Hugging Face Hub is reachable, or set PTWIKI_ASSET_PATH to the folder holding it."
            )
        partial = target.with_name(f".{ref.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            source_info = {"gguf": _convert_gguf, "folder": _link_folder, "hub": _download_hub}[kind](
                ref, source, partial)
            manifest = {
                "name": ref.name,
                "ref": ref.model_dump(),
                "source": source_info,
                "weights_sha256": weights_sha256(partial),
                "staged_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (partial / STAGE_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            for item in partial.iterdir():  # a shared store: readable by the group's other jobs and users
                if item.is_file() and not item.is_symlink():
                    item.chmod(0o644)
            if target.exists():
                shutil.rmtree(target)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return target


def _convert_gguf(ref: ModelRef, source: Path | None, out: Path) -> dict[str, Any]:
    """Dequantize a GGUF checkpoint once into a plain fp32 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert source is not None
    gguf_name = ref.gguf_file or Path(ref.path or "").name
    gguf_path = source / gguf_name
    logger.info("converting %s to an HF safetensors folder in %s", gguf_path, out)
    model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=gguf_name, dtype=torch.float32,
                                                 local_files_only=True)
    _drop_gguf_marker(model)
    model.save_pretrained(str(out), safe_serialization=True)
    # The staged folder's tokenizer files were written by transformers' GGUF converter; prefer them.
    tokenizer = (AutoTokenizer.from_pretrained(str(source), local_files_only=True)
                 if (source / "tokenizer.json").is_file() or (source / "tokenizer_config.json").is_file()
                 else AutoTokenizer.from_pretrained(str(source), gguf_file=gguf_name, local_files_only=True))
    tokenizer.save_pretrained(str(out))
    for extra in ("generation_config.json", "chat_template.jinja"):
        if (source / extra).is_file() and not (out / extra).is_file():
            shutil.copy2(source / extra, out / extra)
    return {"kind": "gguf", "path": str(gguf_path), "sha256": sha256_file(gguf_path)}


def _drop_gguf_marker(model: Any) -> None:
    """transformers keeps a non-trainable GgufHfQuantizer on a GGUF load though weights are plain fp32."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _link_folder(ref: ModelRef, source: Path | None, out: Path) -> dict[str, Any]:
    """A local HF folder (e.g. on a shared filesystem) is linked, not copied: no second multi-GB copy."""
    assert source is not None
    for item in sorted(source.iterdir()):
        if item.is_file():
            (out / item.name).symlink_to(item.resolve())
    return {"kind": "folder", "path": str(source)}


def _download_hub(ref: ModelRef, source: Path | None, out: Path) -> dict[str, Any]:
    from huggingface_hub import snapshot_download

    assert ref.hub_id
    logger.warning("model %r is not staged: DOWNLOADING %s (revision %s) from the Hugging Face Hub into %s",
                   ref.name, ref.hub_id, ref.revision or "main", out)
    snapshot_download(repo_id=ref.hub_id, revision=ref.revision, local_dir=str(out),
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"])
    commit = ref.revision
    try:
        from huggingface_hub import HfApi

        commit = HfApi().model_info(ref.hub_id, revision=ref.revision).sha or ref.revision
    except Exception:  # the files are in; the exact commit is a nice-to-have
        logger.warning("could not resolve the commit of %s", ref.hub_id)
    return {"kind": "hub", "hub_id": ref.hub_id, "revision": commit}


def model_weights_dir(config: Config, ref: ModelRef | None = None) -> Path:
    """The staged HF folder of ``ref``; stages from local files (GGUF, folder) on first use, never downloads."""
    ref = ref or config.models.base
    target = stored_model_dir(ref, config)
    if (target / STAGE_MANIFEST).is_file():
        return target
    kind, _ = _stage_source(ref, config)
    if kind != "hub":
        return stage_model(config, ref)
    raise ModelNotStagedError(
        f"model {ref.name!r} is not staged: no {target / STAGE_MANIFEST} and no local copy "
        f"(path {ref.path!r}, asset path {config.asset_path or 'unset'}). Run `ptwiki-llm models stage "
        f"{ref.name}` where the Hugging Face Hub is reachable (e.g. a login node), or set PTWIKI_ASSET_PATH "
        f"to the folder holding {ref.path or ref.name}."
    )
