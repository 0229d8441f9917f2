"""Config -> peft LoraConfig, bitsandbytes BitsAndBytesConfig and TRL SFTConfig (pure functions, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config, TrainConfig
from ptwiki_llm.errors import ConfigError
from ptwiki_llm.models.runtime import bf16_autocast

# bitsandbytes optimizers; they need CUDA and the bitsandbytes package.
BNB_OPTIMIZERS = ("paged_adamw_32bit", "paged_adamw_8bit", "adamw_bnb_8bit", "adamw_8bit", "paged_lion_8bit",
                  "paged_lion_32bit", "lion_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit")


class TrainingSetupError(ConfigError, ValueError):
    """A training setting that cannot work on this machine or with this model."""


def lora_config(train: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=train.lora.r,
        lora_alpha=train.lora.alpha,
        lora_dropout=train.lora.dropout,
        target_modules=list(train.lora.target_modules),
        bias=train.lora.bias,
        task_type="CAUSAL_LM",
    )


def quantization_config(config: Config, device: str) -> Any | None:
    """QLoRA's 4-bit base weights (NF4 + double quantization, compute in the model dtype), or None."""
    train = config.train
    if train.quantization == "none":
        return None
    if device != "cuda":
        raise TrainingSetupError(
            f"train.quantization={train.quantization!r} (QLoRA) needs a CUDA GPU, but training runs on {device}. "
            "Set train.quantization=none for LoRA in full precision on CPU, or run on a GPU node."
        )
    import torch
    from transformers import BitsAndBytesConfig

    _require_bitsandbytes("train.quantization=" + train.quantization)
    compute = config.models.dtype if config.models.dtype != "auto" else "bfloat16"
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=train.quantization,
        bnb_4bit_use_double_quant=train.double_quantization,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )


def _require_bitsandbytes(why: str) -> None:
    _require_package("bitsandbytes", why, "install the GPU extra (pip install 'ptwiki-llm[gpu]') in the training image")


def _require_package(module: str, why: str, how: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise TrainingSetupError(f"{why} needs the {module} package, which is not installed: {how}.")


def checkpointing_arguments(enabled: bool, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Activation checkpointing under the name the installed transformers knows: ``activation_checkpointing*``
    from 5.2x on (``gradient_checkpointing*`` is deprecated there), only ``gradient_checkpointing*`` before
    (GPU images may ship an older 5.x)."""
    from transformers import TrainingArguments

    prefix = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    return {f"{prefix}_checkpointing": enabled, f"{prefix}_checkpointing_kwargs": kwargs}


def precision_flags(dtype_name: str, bf16_autocast: bool = False) -> dict[str, bool]:
    """The Trainer's mixed-precision switches: bf16/fp16 weights compute in their dtype; float32 weights
    compute in bf16 autocast only when ``bf16_autocast`` (train.bf16_autocast resolved for the device)."""
    return {"bf16": dtype_name == "bfloat16" or (dtype_name == "float32" and bf16_autocast),
            "fp16": dtype_name == "float16"}


def mixed_precision(args: Any) -> str:
    """'bf16', 'fp16' or 'no': what the Trainer's autocast does, for the run's record."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "no"


def sft_config(config: Config, output_dir: Path, device: str, dtype_name: str, has_eval: bool = True) -> Any:
    """TRL SFTConfig: the HF TrainingArguments plus SFT data handling, all from ``config.train``."""
    from trl import SFTConfig

    return SFTConfig(**sft_kwargs(config, output_dir, device, dtype_name, has_eval))


def sft_kwargs(config: Config, output_dir: Path, device: str, dtype_name: str,
               has_eval: bool = True) -> dict[str, Any]:
    """The SFTConfig arguments (a plain dict, so a GPU preset can be checked on a machine without one)."""
    train = config.train
    if train.optimizer in BNB_OPTIMIZERS:
        if device != "cuda":
            raise TrainingSetupError(
                f"train.optimizer={train.optimizer!r} is a bitsandbytes optimizer and needs CUDA; "
                f"training runs on {device}. Use adamw_torch on CPU."
            )
        _require_bitsandbytes(f"train.optimizer={train.optimizer}")
    if train.use_liger_kernel:
        if device != "cuda":
            raise TrainingSetupError(
                f"train.use_liger_kernel needs CUDA (Liger's kernels are Triton GPU kernels); training runs on "
                f"{device}. Set train.use_liger_kernel=false."
            )
        _require_package("liger_kernel", "train.use_liger_kernel", "pip install liger-kernel")
    # Non-reentrant checkpointing works with frozen base weights and DDP without extra hooks.
    checkpointing_kwargs = {"use_reentrant": False} if train.gradient_checkpointing else None
    return dict(
        output_dir=str(output_dir),
        seed=config.seed,
        data_seed=config.seed,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_batch_size,
        per_device_eval_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=train.optimizer,
        **checkpointing_arguments(train.gradient_checkpointing, checkpointing_kwargs),
        use_liger_kernel=train.use_liger_kernel,
        use_cpu=device == "cpu",
        **precision_flags(dtype_name, bf16_autocast(train.bf16_autocast, device)),
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        report_to="none",  # our callback logs to MLflow inside the step's nested run
        disable_tqdm=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=train.dataloader_workers,
        ddp_find_unused_parameters=False,
        fsdp=train.fsdp,
        fsdp_config=train.fsdp_config or None,
        # SFT data handling
        dataset_text_field="text",
        max_length=train.max_seq_length,
        packing=train.packing,
        packing_strategy=train.packing_strategy,
        padding_free=train.padding_free,
        eval_packing=train.packing,
        completion_only_loss=False,
        dataset_num_proc=None,
    )
