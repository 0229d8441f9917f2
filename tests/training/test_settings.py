"""Config -> TRL/peft/bitsandbytes mapping and the bad-input checks that run before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ptwiki_llm.config import load_config
from ptwiki_llm.data.format import FormattedData
from ptwiki_llm.models.runtime import DeviceUnavailableError, resolve_device
from ptwiki_llm.training import settings
from ptwiki_llm.training.data import TrainingDataError, check_sequence_length, load_splits, seeded_sample
from ptwiki_llm.training.settings import TrainingSetupError

REPO = Path(__file__).resolve().parents[2]


def _preset(name: str, **overrides):
    return load_config(REPO / "configs" / name, overrides, environ={})


def test_lora_config_follows_the_train_section():
    config = _preset("atena.yaml")
    lora = settings.lora_config(config.train)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.05)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert lora.task_type == "CAUSAL_LM"


def test_qlora_on_cuda_is_4bit_nf4_double_quant_bf16(monkeypatch):
    monkeypatch.setattr(settings, "_require_bitsandbytes", lambda why: None)  # bitsandbytes is a GPU-image extra
    quant = settings.quantization_config(_preset("atena.yaml"), "cuda")
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4"
    assert quant.bnb_4bit_use_double_quant is True
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    with pytest.raises(TrainingSetupError, match=r"bitsandbytes.*ptwiki-llm\[gpu\]"):
        settings.quantization_config(_preset("atena.yaml"), "cuda")


def test_qlora_on_cpu_is_refused():
    with pytest.raises(TrainingSetupError, match="needs a CUDA GPU"):
        settings.quantization_config(_preset("local.yaml", train={"quantization": "nf4"}), "cpu")
    assert settings.quantization_config(_preset("local.yaml"), "cpu") is None


def test_atena_training_arguments(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "_require_bitsandbytes", lambda why: None)
    kwargs = settings.sft_kwargs(_preset("atena.yaml"), tmp_path, "cuda", "bfloat16")
    assert kwargs["bf16"] is True and kwargs["fp16"] is False and kwargs["use_cpu"] is False
    assert kwargs["optim"] == "paged_adamw_32bit"
    assert kwargs["activation_checkpointing"] is True
    assert kwargs["activation_checkpointing_kwargs"] == {"use_reentrant": False}
    assert kwargs["max_length"] == 2048 and kwargs["packing"] is True
    assert (kwargs["per_device_train_batch_size"], kwargs["gradient_accumulation_steps"]) == (4, 4)
    assert kwargs["report_to"] == "none"


def test_cpu_training_arguments_build_a_real_sft_config(tmp_path):
    config = _preset("local.yaml", train={"bf16_autocast": False})
    args = settings.sft_config(config, tmp_path, "cpu", "float32")
    assert args.use_cpu and not args.bf16 and not args.fp16
    assert settings.mixed_precision(args) == "no"
    assert args.seed == config.seed == args.data_seed
    assert (args.max_steps, args.eval_steps, args.save_steps) == (40, 20, 20)
    assert args.eval_strategy == "steps" and args.save_strategy == "steps"
    assert args.max_length == 256 and args.packing and args.packing_strategy == "wrapped"
    assert args.include_num_input_tokens_seen == "non_padding"


@pytest.mark.parametrize(("native", "setting", "expected"), [
    (True, "auto", True), (False, "auto", False), (False, "on", True), (True, "off", False), (False, True, True)])
def test_cpu_bf16_autocast_follows_the_hardware_unless_set(monkeypatch, tmp_path, native, setting, expected):
    import ptwiki_llm.models.runtime as models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    args = settings.sft_config(_preset("local.yaml", train={"bf16_autocast": setting}), tmp_path, "cpu", "float32")
    assert (args.bf16, args.fp16) == (expected, False)
    assert settings.mixed_precision(args) == ("bf16" if expected else "no")


def test_precision_flags_keep_half_weights_in_their_dtype():
    assert settings.precision_flags("bfloat16") == {"bf16": True, "fp16": False}
    assert settings.precision_flags("float16", bf16_autocast=True) == {"bf16": False, "fp16": True}
    assert settings.precision_flags("float32", bf16_autocast=True) == {"bf16": True, "fp16": False}
    assert settings.precision_flags("float32") == {"bf16": False, "fp16": False}


def test_bf16_autocast_is_never_automatic_on_mps():
    from ptwiki_llm.models.runtime import bf16_autocast

    assert bf16_autocast("auto", "mps") is False and bf16_autocast(True, "mps") is True


def test_liger_and_padding_free_reach_the_sft_config(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "_require_package", lambda module, why, how: None)
    config = _preset("local.yaml", train={"use_liger_kernel": True, "padding_free": True})
    kwargs = settings.sft_kwargs(config, tmp_path, "cuda", "bfloat16")
    assert kwargs["use_liger_kernel"] is True and kwargs["padding_free"] is True
    defaults = settings.sft_kwargs(_preset("local.yaml"), tmp_path, "cpu", "float32")
    assert defaults["use_liger_kernel"] is False and defaults["padding_free"] is False


def test_liger_on_cpu_or_without_the_package_is_refused(monkeypatch, tmp_path):
    import importlib.util

    config = _preset("local.yaml", train={"use_liger_kernel": True})
    with pytest.raises(TrainingSetupError, match="use_liger_kernel needs CUDA"):
        settings.sft_kwargs(config, tmp_path, "cpu", "float32")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name))
    with pytest.raises(TrainingSetupError, match=r"liger_kernel package.*pip install liger-kernel"):
        settings.sft_kwargs(config, tmp_path, "cuda", "bfloat16")


def test_checkpointing_uses_the_name_the_installed_transformers_knows(monkeypatch):
    from transformers import TrainingArguments

    assert settings.checkpointing_arguments(True, {"use_reentrant": False}) == {
        "activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}}
    # transformers before the rename (e.g. 5.17, as GPU images ship it) has only gradient_checkpointing*
    legacy = {k: v for k, v in TrainingArguments.__dataclass_fields__.items() if not k.startswith("activation_")}
    monkeypatch.setattr(TrainingArguments, "__dataclass_fields__", legacy)
    assert settings.checkpointing_arguments(False, None) == {
        "gradient_checkpointing": False, "gradient_checkpointing_kwargs": None}


def test_bitsandbytes_optimizer_on_cpu_is_refused(tmp_path):
    config = _preset("local.yaml", train={"optimizer": "paged_adamw_32bit"})
    with pytest.raises(TrainingSetupError, match="needs CUDA"):
        settings.sft_kwargs(config, tmp_path, "cpu", "float32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_requested_but_absent_fails_instead_of_falling_back():
    with pytest.raises(DeviceUnavailableError, match=r"no CUDA GPU is visible.*models\.device"):
        resolve_device(_preset("atena.yaml"))
    assert resolve_device(_preset("local.yaml")) == "cpu"  # device: auto may use the CPU


def test_empty_training_set_is_an_error(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n", encoding="utf-8")
    (tmp_path / "eval.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match="holds no examples"):
        load_splits(FormattedData(dir=str(tmp_path), train=str(tmp_path / "train.jsonl"),
                                  eval=str(tmp_path / "eval.jsonl")), None, None, 1)


def test_missing_split_names_the_format_step(tmp_path):
    with pytest.raises(TrainingDataError, match="run the format step"):
        load_splits(FormattedData(dir=str(tmp_path), train=str(tmp_path / "nope.jsonl")), None, None, 1)


def test_sequence_length_above_context():
    check_sequence_length(8192, 8192, "m")
    with pytest.raises(TrainingDataError, match=r"exceeds the context of m \(8192 tokens\)"):
        check_sequence_length(8193, 8192, "m")


def test_seeded_sample_is_deterministic_and_keeps_file_order():
    texts = [str(i) for i in range(100)]
    first = seeded_sample(texts, 10, seed=7)
    assert first == seeded_sample(texts, 10, seed=7) != seeded_sample(texts, 10, seed=8)
    assert [int(t) for t in first] == sorted(int(t) for t in first)
    assert seeded_sample(texts, None, 1) == texts


def test_larger_presets_extend_atena():
    big = _preset("atena-70b.yaml")
    assert big.preset == "atena-70b" and big.models.base.hub_id == "meta-llama/Llama-2-70b-hf"
    assert big.train.fsdp == "full_shard auto_wrap" and big.train.num_processes == 8
    assert big.data.source == _preset("atena.yaml").data.source  # inherited
    assert _preset("atena-13b.yaml").train.quantization == "nf4"
