"""Where inference weights go (ptwiki_llm/models/placement.py): the load arguments for the CPU, one GPU and four
GPUs, computed without a GPU, and a model split by accelerate's device_map computing what the whole model does."""

from __future__ import annotations

import pytest

from ptwiki_llm.models.placement import (
    ShardingError,
    check_fits,
    check_on_gpus,
    inference_placement,
    weights_bytes,
)
from tests.tiny_llama import tiny_llama

GIB = 1 << 30
H100 = 80 * GIB


@pytest.mark.parametrize(("device", "gpus"), [("cpu", []), ("cpu", [H100] * 4), ("cuda", [H100])])
def test_the_cpu_and_one_gpu_load_as_before(device, gpus):
    assert inference_placement(device, gpus, 0.7) == {}


def test_four_gpus_share_the_weights_with_headroom_on_each():
    assert inference_placement("cuda", [H100] * 4, 0.7) == {
        "device_map": "auto", "max_memory": {0: int(H100 * 0.7), 1: int(H100 * 0.7), 2: int(H100 * 0.7),
                                             3: int(H100 * 0.7)}}


def test_weights_that_the_capped_gpus_cannot_hold_are_refused_before_loading():
    llama_70b = 68976648192 * 2  # bf16
    check_fits(llama_70b, inference_placement("cuda", [H100] * 4, 0.7), 0.7)
    with pytest.raises(ShardingError, match=r"128\.5 GiB of weights do not fit in 2 GPU\(s\) .* at least 3 such GPUs"):
        check_fits(llama_70b, inference_placement("cuda", [H100] * 2, 0.7), 0.7)
    check_fits(llama_70b, {}, 0.7)  # one device: nothing capped, nothing to check


def test_weights_bytes_count_the_loaded_dtype_from_the_headers(tmp_path):
    import torch

    model = tiny_llama(tmp_path)
    assert weights_bytes(tmp_path, torch.bfloat16) == model.num_parameters() * 2
    assert weights_bytes(tmp_path, torch.float32) == model.num_parameters() * 4


def test_a_sharded_load_that_spilled_off_the_gpus_is_refused():
    from types import SimpleNamespace

    with pytest.raises(ShardingError, match="on cpu, not on the GPUs"):
        check_on_gpus(SimpleNamespace(hf_device_map={"model.embed_tokens": 0, "model.layers.0": 1, "lm_head": "cpu"}))
    check_on_gpus(SimpleNamespace(hf_device_map={"model.embed_tokens": 0, "model.layers.0": 1, "lm_head": 1}))


def test_a_model_split_by_device_map_computes_what_the_whole_model_does(tmp_path):
    """No GPU here: accelerate splits the model between the CPU and disk (offloaded layers load for their turn),
    the same dispatch hooks that move activations between GPUs."""
    import torch
    from transformers import LlamaForCausalLM

    whole = tiny_llama(tmp_path / "model", layers=4)
    split = LlamaForCausalLM.from_pretrained(
        str(tmp_path / "model"), device_map="auto", max_memory={"cpu": weights_bytes(tmp_path / "model",
                                                                                     torch.float32) // 2},
        offload_folder=str(tmp_path / "offload"), dtype=torch.float32).eval()
    assert {"cpu", "disk"} <= set(split.hf_device_map.values()), split.hf_device_map
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]])
    with torch.inference_mode():
        assert torch.allclose(whole(input_ids=ids).logits, split(input_ids=ids).logits, atol=1e-5)
        options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
        assert torch.equal(whole.generate(ids, **options), split.generate(ids, **options))
    # the evaluation's own scoring (windows, a cached head scored once for every candidate) through the hooks
    from benchmarks.random_models import _word_tokenizer
    from ptwiki_llm.evaluation.scoring import choice_scores
    from ptwiki_llm.training.heldout import heldout_metrics

    tokenizer = _word_tokenizer(64, ["<unk>", "<s>", "</s>"], "<s> $A", unk_token="<unk>", bos_token="<s>",
                                eos_token="</s>")
    text = " ".join(f"w{4 + (i * 7) % 60}" for i in range(40))
    assert heldout_metrics(split, tokenizer, [text], 16) == pytest.approx(heldout_metrics(whole, tokenizer, [text], 16))
    scores = [choice_scores(m, tokenizer, "w10 w11 w12", ["w13", "w20 w21 w22"]) for m in (whole, split)]
    assert [s.total_logprob for s in scores[1]] == pytest.approx([s.total_logprob for s in scores[0]], abs=1e-4)


class _Captured(Exception):
    pass


@pytest.mark.parametrize(("device", "gpus", "expected"), [
    ("cpu", [], {}),
    ("cuda", [H100], {}),
    ("cuda", [H100] * 4, {"device_map": "auto", "max_memory": dict.fromkeys(range(4), int(H100 * 0.7))}),
])
def test_load_causal_lm_passes_the_placement_to_from_pretrained(device, gpus, expected, tmp_path, monkeypatch):
    """What load_causal_lm asks transformers for on the CPU, one GPU and four GPUs (sizes given, no GPU used)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ptwiki_llm.config import load_config
    from ptwiki_llm.models import placement, runtime
    from tests.training.conftest import REPO

    tiny_llama(tmp_path / "tiny")
    config = load_config(REPO / "configs" / "local.yaml", {
        "workdir": str(tmp_path / "wd"), "models": {"store": str(tmp_path / "store"), "dtype": "bfloat16",
                                                    "base": {"name": "tiny", "path": str(tmp_path / "tiny")}}},
        environ={})
    captured: dict = {}

    def from_pretrained(folder, **kwargs):
        captured.update(kwargs)
        raise _Captured

    monkeypatch.setattr(runtime, "resolve_device", lambda _: device)
    monkeypatch.setattr(placement, "visible_gpu_memory", lambda: gpus)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    with pytest.raises(_Captured):
        runtime.load_causal_lm(config, gpu_weights_share=config.models.gpu_weights_share)
    assert captured == {"dtype": torch.bfloat16, "local_files_only": True,
                        "attn_implementation": "sdpa", **expected}
