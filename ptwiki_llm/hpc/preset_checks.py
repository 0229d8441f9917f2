"""Checks, at config load, that a SLURM preset can run as configured (each problem says what to set).

- The train job's GPUs match ``train.num_processes``: the train step starts one rank per GPU on one node
  (``torchrun --standalone``), so 4 ranks need ``--gres=gpu:4`` on ``nodes: 1``.
- FSDP is not combined with 4-bit quantization (QLoRA + FSDP is not a verified path here).
- Host memory (``--mem``) holds the base weights as many times as processes load them whole: every DDP
  rank, one rank under FSDP with ``cpu_ram_efficient_loading``, an evaluate job on one GPU (the base loads
  in host memory, then moves to the GPU). 4-bit loading quantizes shard by shard, so a QLoRA rank is not
  held to the whole base in host memory; an evaluate job on several GPUs loads each tensor straight onto its
  GPU. The register step reads no base weights (the adapter is checked against the base's config.json), so
  it is held to nothing here.
- GPU memory (``gpu_memory`` of the job, when set): one GPU holds what one rank loads (the whole base for
  DDP, a 1/ranks share under FSDP), counted at the weights' own size, a lower bound. Evaluate holds the
  whole base on one GPU; on several it loads the base across them (ptwiki_llm/models/placement.py), weights
  / GPUs on each, which must fit under ``models.gpu_weights_share`` of a GPU (the rest is headroom for
  activations and the KV cache). The format step, when ``data.knowledge.paraphrases`` asks the base on CUDA to
  write paraphrases, needs a GPU job held to the same as evaluate.

Sizes use ``models.base.parameters`` (the parameter count) and the bytes per parameter of
``models.dtype`` (4-bit: half a byte); with no count, or no ``mem``, the memory checks are skipped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptwiki_llm.config import Config, SlurmJobConfig

_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
PARAPHRASE_STEP = "format_examples"  # the pipeline step (and hpc.steps key) that writes the knowledge texts
_GRES_GPUS = re.compile(r"^gpu(?::[^:,]+)?:(\d+)$")


def memory_bytes(value: str) -> int:
    """A SLURM size (``--mem`` style: a number of MB, or with K/M/G/T) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", value.strip().upper())
    if not match:
        raise ValueError(f"{value!r} is not a SLURM memory size like 64G or 4096")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "M"])


def job_gpus(job: SlurmJobConfig) -> int | None:
    """GPUs per node the job asks for; None when a custom gres does not say."""
    if job.gres:
        match = _GRES_GPUS.match(job.gres)
        return int(match.group(1)) if match else None
    return job.gpus


def _gb(value: float) -> str:
    return f"{value / (1 << 30):.0f} GiB"


def problems(config: Config) -> list[str]:
    """What keeps the preset from running as configured (empty when nothing does)."""
    hpc, train, models = config.hpc, config.train, config.models
    found: list[str] = []
    job = hpc.job_for("train")
    gpus = job_gpus(job)
    cuda = models.device == "cuda"
    if cuda and gpus is not None and gpus != train.num_processes:
        found.append(
            f"train.num_processes={train.num_processes} ranks but the train job asks for {gpus} GPU(s): set "
            f"hpc.steps.train.gpus: {train.num_processes} (or gres) so each rank has its GPU"
        )
    if train.num_processes > 1 and job.nodes != 1:
        found.append(f"train.num_processes={train.num_processes} runs its ranks on one node (torchrun --standalone), "
                     f"but hpc.steps.train.nodes={job.nodes}: set nodes: 1 (multi-node: docs/training.md)")
    if train.fsdp and train.quantization != "none":
        found.append(f"train.fsdp={train.fsdp!r} with train.quantization={train.quantization!r}: FSDP over 4-bit "
                     "weights is not supported here; use quantization: none (bf16 LoRA) with FSDP, or DDP for QLoRA")
    params = models.base.parameters
    if params is None:
        return found
    dtype = models.dtype if models.dtype != "auto" else ("bfloat16" if cuda else "float32")
    weights = params * _BYTES[dtype]
    quantized = params * 0.5
    fsdp_lean = bool(train.fsdp) and bool(train.fsdp_config.get("cpu_ram_efficient_loading"))
    if train.quantization == "none":
        loaders = 1 if fsdp_lean else train.num_processes
        _check_host(found, "train", job, loaders * weights, f"{loaders} process(es) x {_gb(weights)} of {dtype} base")
    if cuda and job.gpu_memory:
        per_gpu = (weights / train.num_processes if train.fsdp
                   else quantized if train.quantization != "none" else weights)
        _check_gpu(found, "train", job, per_gpu)
    if cuda:
        share = config.models.gpu_weights_share
        _check_inference(found, "evaluate", hpc.job_for("evaluate"), weights, share)
        paraphrases = config.data.knowledge.paraphrases
        if paraphrases:  # the format step generates them with the base
            paraphrasing = hpc.job_for(PARAPHRASE_STEP)
            if not job_gpus(paraphrasing):
                found.append(f"data.knowledge.paraphrases={paraphrases}: the format step generates them with the base "
                             f"on models.device=cuda, but its job asks for no GPU; set hpc.steps.{PARAPHRASE_STEP} "
                             "partition and gpus (as atena.yaml does), or data.knowledge.paraphrases: 0")
            else:
                _check_inference(found, PARAPHRASE_STEP, paraphrasing, weights, share)
    return found


def _check_inference(found: list[str], step: str, job: SlurmJobConfig, weights: float, share: float) -> None:
    """One process loads the base for inference: whole on one GPU (through host memory), or across the job's GPUs."""
    gpus = job_gpus(job)
    if gpus is None:  # a gres that does not say how many GPUs
        return
    if gpus <= 1:
        _check_host(found, step, job, weights, f"the base ({_gb(weights)}) it loads before moving it to the GPU")
    if not job.gpu_memory:
        return
    gpu = memory_bytes(job.gpu_memory)
    needed = -(-int(weights) // int(gpu * share))
    if gpus <= 1 and gpu < weights:
        found.append(f"hpc.steps.{step}: one GPU ({job.gpu_memory}) cannot hold the {_gb(weights)} of base weights "
                     f"the {step} process loads on it; set hpc.steps.{step}.gpus: {needed} (inference then loads "
                     f"the base across the job's GPUs, at most models.gpu_weights_share={share} of each)")
    elif gpus > 1 and weights / gpus > gpu * share:
        found.append(f"hpc.steps.{step}: {gpus} GPUs ({job.gpu_memory} each) hold {_gb(weights / gpus)} of base "
                     f"weights each, more than models.gpu_weights_share={share} of a GPU ({_gb(gpu * share)}, the "
                     f"rest is activations and KV cache); set hpc.steps.{step}.gpus: {needed}")


def _check_host(found: list[str], step: str, job: SlurmJobConfig, need: float, what: str) -> None:
    if job.mem and memory_bytes(job.mem) < need:
        found.append(f"hpc.steps.{step}.mem={job.mem} cannot hold {what}: needs at least {_gb(need)}")


def _check_gpu(found: list[str], step: str, job: SlurmJobConfig, need: float) -> None:
    assert job.gpu_memory is not None
    if memory_bytes(job.gpu_memory) < need:
        found.append(f"hpc.steps.{step}: one GPU ({job.gpu_memory}) cannot hold the {_gb(need)} of base weights "
                     f"one {step} process loads on it; more GPUs (FSDP), 4-bit quantization, or a bigger GPU")
