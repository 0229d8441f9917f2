"""Model references: find a model's local folder (staged asset or model store), load its tokenizer.

Every load reads local files; the Hub is used only where it is reachable, HF_HUB_OFFLINE is not
set and config allows downloads.
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
from ptwiki_llm.errors import AssetMissingError, ConfigError
from ptwiki_llm.provenance import sha256_file

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


# --------------------------------------------------------------------------------------------------
# Staging: every causal LM is loaded from a plain HF folder in the model store, {store}/{name}, that
# holds a stage manifest. A GGUF checkpoint is converted once (dequantized to fp32 safetensors);
# a local HF folder is linked file by file; a Hub id is downloaded (only by `ptwiki-llm models stage`).
# --------------------------------------------------------------------------------------------------

STAGE_MANIFEST = "ptwiki_stage.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class DeviceUnavailableError(ConfigError, RuntimeError):
    pass


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


def resolve_device(config: Config) -> str:
    """'cpu' or 'cuda' for ``models.device``; 'cuda' without a GPU is an error, never a silent fallback."""
    import torch

    wanted = config.models.device
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "models.device is 'cuda' but no CUDA GPU is visible (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}). Run on a GPU node (SLURM --gres=gpu:N, apptainer exec --nv), "
            "or set models.device to 'cpu' or 'auto' (e.g. --set models.device=auto)."
        )
    return wanted


def resolve_dtype(config: Config, device: str) -> Any:
    import torch

    if config.models.dtype != "auto":
        return getattr(torch, config.models.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bf16 in hardware (elsewhere bf16 is emulated, slower than float32)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, check, lambda: False)() for check in checks)


def cpu_has_vnni() -> bool:
    """AVX512-VNNI or AVX-VNNI: the CPU multiplies int8 in hardware (int8-quantized embeddings pay off)."""
    import torch

    return bool(getattr(getattr(torch, "cpu", None), "_is_vnni_supported", lambda: False)())


def bf16_autocast(setting: bool | str, device: str) -> bool:
    """Whether float32 weights compute their matmuls in bf16 autocast: true, false, or 'auto' = where the
    hardware does bf16 natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), never on MPS."""
    if setting != "auto":
        return bool(setting)
    if device == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return device == "cpu" and cpu_has_native_bf16()


def attn_implementation(config: Config, device: str) -> str:
    return config.models.attn_implementation or ("eager" if device == "cpu" else "sdpa")


def context_length(folder: Path) -> int | None:
    """The model's maximum sequence length from its config.json."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def load_staged_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(config: Config, ref: ModelRef | None = None, *, quantization_config: Any = None,
                   device_map: Any = None) -> tuple[Any, Any]:
    """The base causal LM and its tokenizer from local files only, on the configured device, in eval mode.

    The tokenizer pads on the left (batched generation); training collators pad on their own.
    ``quantization_config`` (a BitsAndBytesConfig for QLoRA) is only valid on CUDA.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ref = ref or config.models.base
    device = resolve_device(config)
    folder = model_weights_dir(config, ref)
    dtype = resolve_dtype(config, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True,
                              "attn_implementation": attn_implementation(config, device)}
    if quantization_config is not None:
        if device != "cuda":
            raise DeviceUnavailableError("4-bit quantization (QLoRA) needs CUDA; set train.quantization=none on CPU")
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = device_map or {"": torch.cuda.current_device()}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if quantization_config is None and device_map is None:
        model.to(device)
    model.eval()
    tokenizer = load_staged_tokenizer(folder)
    tokenizer.padding_side = "left"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
