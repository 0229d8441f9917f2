"""Model-FLOPs utilisation (MFU) of LoRA/QLoRA training: FLOPs per token, and GPUs' dense bf16 peaks.

FLOPs per trained token with LoRA are ``4 N``, where N counts the base model's matmul weights (every
linear layer of the decoder blocks plus the LM head; the embedding table is a lookup and does no
multiply-adds; norms and the LoRA adapters themselves are left out as small):

- forward: one multiply-add (2 FLOPs) per weight per token, ``2 N``;
- backward through the activations: the gradient with respect to each layer's input is another matmul
  with the same weight, ``2 N``. It is needed down to the first layer, because every layer has adapters;
- no weight gradients: the base is frozen, so the ``2 N`` that full fine-tuning spends on them
  (``6 N`` in all) is not done.

As is usual for MFU, recomputation under activation checkpointing (another forward, ``2 N``) and the
attention scores' own FLOPs (``4 * layers * hidden * sequence`` per token forward, a few percent at
2k tokens for 7B) are not counted: MFU measures useful model work, not what the GPU executed.
With QLoRA the weights are dequantized from 4-bit NF4 to bf16 for each matmul; the FLOPs are the same.
"""

from __future__ import annotations

import re
from typing import Any

# Dense (no structured sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets, which
# quote the sparse figure: half of it is the dense peak. Patterns are tried in order against
# torch.cuda.get_device_name() (e.g. "NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB").
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"H200 NVL", 835.5, "NVIDIA H200 NVL datasheet: BF16 1,671 TFLOPS with sparsity"),
    (r"GH200", 989.5, "NVIDIA GH200 datasheet: BF16 1,979 TFLOPS with sparsity"),
    (r"H200", 989.5, "NVIDIA H200 (SXM) datasheet: BF16 1,979 TFLOPS with sparsity"),
    (r"H100 NVL", 835.5, "NVIDIA H100 NVL datasheet: BF16 1,671 TFLOPS with sparsity"),
    (r"H100 PCIe", 756.5, "NVIDIA H100 PCIe datasheet: BF16 1,513 TFLOPS with sparsity"),
    (r"H100", 989.5, "NVIDIA H100 SXM datasheet: BF16 1,979 TFLOPS with sparsity"),
    (r"A100", 312.0, "NVIDIA A100 datasheet: BF16 312 TFLOPS dense (624 with sparsity), SXM and PCIe"),
    (r"L40S", 362.05, "NVIDIA L40S datasheet: BF16 733 TFLOPS with sparsity"),
    (r"\bL4\b", 121.0, "NVIDIA L4 datasheet: BF16 242 TFLOPS with sparsity"),
    (r"\bA10\b", 125.0, "NVIDIA A10 datasheet: BF16 125 TFLOPS dense (250 with sparsity)"),
)


class UnknownGpuError(ValueError):
    """A GPU whose bf16 peak is not in the table."""


def peak_bf16_tflops(gpu_name: str) -> tuple[float, str]:
    """(dense bf16 peak in TFLOP/s, its source) for a GPU name as torch reports it."""
    for pattern, tflops, source in PEAK_BF16_TFLOPS:
        if re.search(pattern, gpu_name):
            return tflops, source
    raise UnknownGpuError(
        f"no dense bf16 peak known for GPU {gpu_name!r} (known: {', '.join(p for p, _, _ in PEAK_BF16_TFLOPS)}); "
        "pass --peak-tflops with the figure from its datasheet (dense, i.e. half the 'with sparsity' number)"
    )


def matmul_params(model_config: dict[str, Any]) -> int:
    """N: weights the matmuls of one token go through in a Llama-architecture decoder (config.json values).

    Per layer: q and o projections (hidden x hidden each), k and v (hidden x kv width, grouped-query aware),
    gate, up and down (hidden x intermediate each); plus the LM head (vocab x hidden). Embedding and
    norms are not counted.
    """
    hidden = model_config["hidden_size"]
    heads = model_config["num_attention_heads"]
    kv_heads = model_config.get("num_key_value_heads") or heads
    head_dim = model_config.get("head_dim") or hidden // heads
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * model_config["intermediate_size"]
    return model_config["num_hidden_layers"] * (attention + mlp) + model_config["vocab_size"] * hidden


def lora_flops_per_token(n_matmul_params: int) -> int:
    """4 N: forward 2 N plus the backward through the activations 2 N (no weight gradients of the frozen base)."""
    return 4 * n_matmul_params


def mfu(tokens_per_s: float, n_matmul_params: int, peak_tflops: float) -> float:
    """Achieved model FLOP/s (4 N per token) as a fraction of the peak."""
    return tokens_per_s * lora_flops_per_token(n_matmul_params) / (peak_tflops * 1e12)
