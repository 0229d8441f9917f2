"""Where an inference model's weights go: on one device as before, or across every GPU the job sees.

With several GPUs visible (the evaluate job of a 70B base asks for them), the model loads in one process across
them with accelerate's ``device_map="auto"`` (balanced over the GPUs, whole decoder layers per GPU); ``max_memory``
caps each GPU's share of weights at ``models.gpu_weights_share`` of its memory, leaving the rest to activations and
the KV cache of batched generation. On the CPU or one GPU nothing changes: the model loads whole, then moves there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptwiki_llm.errors import ConfigError

# the jobs that load a model for inference: evaluate (the arms) and format (data.knowledge.paraphrases)
_GPUS_SETTING = "hpc.steps.evaluate.gpus, or hpc.steps.format_examples.gpus for paraphrases"


class ShardingError(ConfigError, RuntimeError):
    pass


def inference_placement(device: str, gpu_memory: Sequence[int], weights_share: float) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``device`` with GPUs of ``gpu_memory`` bytes each visible:
    none on the CPU or one GPU; on several, ``device_map="auto"`` and ``max_memory`` per GPU index."""
    if device != "cuda" or len(gpu_memory) < 2:
        return {}
    return {"device_map": "auto", "max_memory": {index: int(total * weights_share)
                                                 for index, total in enumerate(gpu_memory)}}


def sharded_load(device: str, folder: Path, dtype: Any, weights_share: float) -> dict[str, Any]:
    """inference_placement for the GPUs visible here, once the model in ``folder`` is known to fit them."""
    placement = inference_placement(device, visible_gpu_memory(), weights_share)
    if placement:
        check_fits(weights_bytes(folder, dtype), placement, weights_share)
    return placement


def visible_gpu_memory() -> list[int]:
    """Total memory of each GPU this process sees (CUDA_VISIBLE_DEVICES: the GPUs SLURM bound to the job)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(index).total_memory for index in range(torch.cuda.device_count())]


def weights_bytes(folder: Path, dtype: Any) -> int:
    """Bytes the model in ``folder`` takes loaded in ``dtype``, from its safetensors headers (no tensor data)."""
    from safetensors import safe_open

    numel = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (a safetensors file, not a dict)
                count = 1
                for size in weights.get_slice(name).get_shape():
                    count *= size
                numel += count
    return numel * dtype.itemsize


def check_fits(need: int, placement: dict[str, Any], share: float) -> None:
    """Refuse, before minutes of loading, weights that the GPUs' capped memory cannot hold (accelerate would
    spill them to disk)."""
    caps = placement.get("max_memory") or {}
    room = sum(caps.values())
    if caps and need > room:
        gib = 1 << 30
        wanted = -(-need // max(caps.values()))
        raise ShardingError(
            f"the model's {need / gib:.1f} GiB of weights do not fit in {len(caps)} GPU(s) at "
            f"models.gpu_weights_share={share} of each ({room / gib:.1f} GiB in all): run on at least {wanted} "
            f"such GPUs ({_GPUS_SETTING}) or raise models.gpu_weights_share"
        )


def check_on_gpus(model: Any) -> None:
    """After a sharded load: every module on a GPU, none offloaded to the CPU or disk."""
    offloaded = sorted({str(where) for where in (getattr(model, "hf_device_map", None) or {}).values()
                        if not isinstance(where, int) and not str(where).startswith("cuda")})
    if offloaded:
        raise ShardingError(f"accelerate placed part of the model on {', '.join(offloaded)}, not on the GPUs: run "
                            f"on more GPUs ({_GPUS_SETTING}) or raise models.gpu_weights_share")
