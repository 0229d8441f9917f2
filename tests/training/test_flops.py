"""MFU arithmetic: N from a config, 4N per token, the datasheet peak table (hand-computed cases)."""

from __future__ import annotations

import pytest

from ptwiki_llm.training.flops import (
    UnknownGpuError,
    lora_flops_per_token,
    matmul_params,
    mfu,
    peak_bf16_tflops,
)

LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000}
# SmolLM2-135M: grouped-query attention (3 KV heads of 64), 134,515,008 parameters in all (tied embeddings)
SMOLLM2_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152}


def test_llama_2_7b_matmul_weights():
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008  # q, k, v, o + gate, up, down
    assert matmul_params(LLAMA_2_7B) == 32 * per_layer + 32000 * 4096 == 6_607_077_376
    # the published 6.74 B parameters = N + the embedding table + 65 RMSNorm weight vectors
    assert matmul_params(LLAMA_2_7B) + 32000 * 4096 + 65 * 4096 == 6_738_415_616


def test_grouped_query_attention_counts_the_narrow_k_and_v():
    per_layer = 2 * 576 * 576 + 2 * 576 * 3 * 64 + 3 * 576 * 1536  # q, o full width; k, v 3 heads of 64
    assert matmul_params(SMOLLM2_135M) == 30 * per_layer + 49152 * 576
    # tied embeddings: the one stored table is the LM head's matmul, so N = all parameters but the 61 norms
    assert matmul_params(SMOLLM2_135M) == 134_515_008 - (2 * 30 + 1) * 576


def test_four_n_per_token_and_mfu_by_hand():
    n = matmul_params(LLAMA_2_7B)
    assert lora_flops_per_token(n) == 26_428_309_504
    # 3,000 tokens/s x 26.428 GFLOP = 79.285 TFLOP/s; of an H200's 989.5 dense bf16 TFLOP/s that is 8.01 %
    assert mfu(3000, n, 989.5) == pytest.approx(79.284928512 / 989.5, rel=1e-12)
    assert mfu(3000, n, 989.5) == pytest.approx(0.0801262, abs=1e-7)


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H200", 989.5), ("NVIDIA H200 NVL", 835.5), ("NVIDIA GH200 480GB", 989.5),
    ("NVIDIA H100 80GB HBM3", 989.5), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H100 NVL", 835.5),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.05),
    ("NVIDIA L4", 121.0), ("NVIDIA A10", 125.0),
])
def test_peak_table_by_torch_device_name(name, tflops):
    peak, source = peak_bf16_tflops(name)
    assert peak == tflops and "datasheet" in source


def test_unknown_gpu_asks_for_the_peak():
    with pytest.raises(UnknownGpuError, match="--peak-tflops"):
        peak_bf16_tflops("Tesla V100-SXM2-16GB")  # no bf16 tensor cores
