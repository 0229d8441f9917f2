"""Running a model: the device and precision policy, and loading a staged causal LM and its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config, ModelRef
from ptwiki_llm.errors import ConfigError
from ptwiki_llm.models.placement import check_on_gpus, sharded_load
from ptwiki_llm.models.staging import model_weights_dir


class DeviceUnavailableError(ConfigError, RuntimeError):
    pass


def resolve_device(config: Config) -> str:
    """'cpu' or 'cuda' for ``models.device`` (pick_device)."""
    return pick_device(config.models.device, "models.device")


def pick_device(wanted: str, setting: str, accelerators: tuple[str, ...] = ("cuda",)) -> str:
    """The device policy of every model: 'auto' is the first available of ``accelerators``, else 'cpu'; a device
    asked for by name that is not there is an error naming ``setting``, never a silent fallback."""
    import torch

    if wanted == "auto":
        return next((device for device in accelerators if _available(device)), "cpu")
    if wanted == "cuda" and not _available("cuda"):
        raise DeviceUnavailableError(
            f"{setting} is 'cuda' but no CUDA GPU is visible (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}). Run on a GPU node (SLURM --gres=gpu:N, apptainer exec --nv), "
            f"or set {setting} to 'cpu' or 'auto' (e.g. --set {setting}=auto)."
        )
    if wanted != "cpu" and not _available(wanted):
        raise DeviceUnavailableError(f"{setting} is {wanted!r} but torch sees no such device here; set {setting} "
                                     "to 'cpu' or 'auto'")
    return wanted


def _available(device: str) -> bool:
    import torch

    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return device == "cpu"


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


def attn_implementation(config: Config) -> str:
    """models.attn_implementation, else sdpa, on the CPU too: measured on the 2-core CPU with the 135M model in
    float32, a LoRA train step ([2, 256] tokens, forward and backward, attention mask as the trainer passes it)
    took 3.25 s with sdpa against 3.44 s with eager (2.68 s against 3.43 s without a mask), and one 600-token
    prefill 1.0-1.6 s against 3.6-13 s (loaded machine)."""
    return config.models.attn_implementation or "sdpa"


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
                   device_map: Any = None, gpu_weights_share: float | None = None) -> tuple[Any, Any]:
    """The base causal LM and its tokenizer from local files only, on the configured device, in eval mode.

    The tokenizer pads on the left (batched generation); training collators pad on their own.
    ``quantization_config`` (a BitsAndBytesConfig for QLoRA) is only valid on CUDA. ``gpu_weights_share``
    (inference): with several GPUs visible, the model loads across them, at most this share of each GPU's memory
    for weights (models/placement.py); on the CPU or one GPU, and when None, it loads whole on the device.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ref = ref or config.models.base
    device = resolve_device(config)
    folder = model_weights_dir(config, ref)
    dtype = resolve_dtype(config, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True,
                              "attn_implementation": attn_implementation(config)}
    if quantization_config is not None:
        if device != "cuda":
            raise DeviceUnavailableError("4-bit quantization (QLoRA) needs CUDA; set train.quantization=none on CPU")
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = device_map or {"": torch.cuda.current_device()}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    elif gpu_weights_share is not None:
        kwargs.update(sharded_load(device, folder, dtype, gpu_weights_share))
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    elif gpu_weights_share is not None:
        check_on_gpus(model)
    model.eval()
    tokenizer = load_staged_tokenizer(folder)
    tokenizer.padding_side = "left"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def forward_parameters(model: Any) -> Any:
    """The parameters of the model's own forward (under a PEFT wrapper: the base model's)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inspect.signature(base.forward).parameters


def cache_keyword(model: Any) -> str:
    """transformers 5.x renames ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40)."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"
