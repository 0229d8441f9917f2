"""An adapter checked against its base's config.json alone (ptwiki_llm/models/adapters.py): what loading it into
the real base would refuse is refused without the base's weights."""

from __future__ import annotations

import json

import pytest

from ptwiki_llm.models.adapters import adapter_on_meta_base, adapter_shapes
from tests.tiny_llama import tiny_llama


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("adapter-check")
    tiny_llama(root / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
    get_peft_model(tiny_llama(), lora).save_pretrained(str(root / "adapter"))
    (root / "base" / "model.safetensors").unlink()  # the check reads config.json only
    return root / "base", root / "adapter", torch.float32


def test_an_adapter_of_the_base_fits_it_on_the_meta_device(base_and_adapter):
    base, adapter, dtype = base_and_adapter
    model, problems = adapter_on_meta_base(base, adapter, dtype)
    assert problems == []
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert len(adapter_shapes(adapter)) == 2 * 3 * 2  # lora_A + lora_B x 3 modules x 2 layers


def test_an_adapter_of_another_architecture_is_refused(base_and_adapter, tmp_path):
    _, adapter, dtype = base_and_adapter
    wider = tiny_llama(layers=3)
    wider.config.hidden_size = 48  # other widths: the same module names, other shapes, and a layer more
    from transformers import LlamaForCausalLM

    LlamaForCausalLM(wider.config).save_pretrained(str(tmp_path / "wider"))
    _, problems = adapter_on_meta_base(tmp_path / "wider", adapter, dtype)
    assert any("missing" in p and "layers.2." in p for p in problems), problems
    assert any("have shapes the base's layers do not" in p and "[4, 32] (base: [4, 48])" in p for p in problems)


def test_an_adapter_targeting_modules_the_base_lacks_is_refused(base_and_adapter, tmp_path):
    base, adapter, dtype = base_and_adapter
    other = tmp_path / "adapter"
    other.mkdir()
    config = json.loads((adapter / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["c_attn"]}))
    (other / "adapter_model.safetensors").symlink_to(adapter / "adapter_model.safetensors")
    _, problems = adapter_on_meta_base(base, other, dtype)
    assert len(problems) == 1 and "c_attn" in problems[0], problems


def test_a_tensor_the_base_has_no_module_for_is_refused(base_and_adapter, tmp_path):
    from safetensors.torch import load_file, save_file

    base, adapter, dtype = base_and_adapter
    other = tmp_path / "adapter"
    other.mkdir()
    (other / "adapter_config.json").symlink_to(adapter / "adapter_config.json")
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    tensors["base_model.model.model.layers.0.mlp.extra_proj.lora_A.weight"] = tensors[
        "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"].clone()
    save_file(tensors, str(other / "adapter_model.safetensors"))
    _, problems = adapter_on_meta_base(base, other, dtype)
    assert problems == ["1 adapter tensor(s) match no module of the base, e.g. "
                        "base_model.model.model.layers.0.mlp.extra_proj.lora_A.weight"]


def test_the_register_step_refuses_an_adapter_that_does_not_fit_and_says_what_to_do(base_and_adapter, tmp_path):
    from ptwiki_llm.registry import BaseModelMismatchError, _adapter_model

    _, adapter, dtype = base_and_adapter
    tiny_llama(tmp_path / "deeper", layers=3)
    with pytest.raises(BaseModelMismatchError, match=r"does not fit the base staged in .*register it with the base"):
        _adapter_model(tmp_path / "deeper", adapter, dtype)
