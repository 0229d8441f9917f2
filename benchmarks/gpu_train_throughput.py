"""Benchmark: LoRA/QLoRA training throughput, MFU and peak memory at the Llama-2-7B shape, via the train step's code.

One prepared run for a GPU machine that reaches nothing outside (README "Measuring the GPU path"):

1. **prepare**: writes a random-weight Llama-2-7B-shaped checkpoint (hidden 4096, 32 layers, 32 heads,
   intermediate 11008, vocab 32000; bf16 safetensors) into a local model store as a staged model, with
   a word-level tokenizer, and a formatted train split of synthetic texts whose lengths spread
   log-uniformly from ``--min-text-tokens`` to the sequence length. On CUDA it also times an
   8192^3 bf16 matmul (the achievable ceiling next to the datasheet peak).
2. **variants**: each trains in a fresh process with ``ptwiki_llm.training.trainer.run_training`` (what the
   train step and SLURM jobs run), the config being ``configs/atena.yaml`` (QLoRA: NF4 + double
   quantization, bf16 compute, paged AdamW 32-bit, gradient checkpointing, LoRA r/alpha/targets,
   ``max_seq_length``, ``per_device_batch_size``) with one change per variant: plain LoRA on bf16 weights,
   Liger kernels, padding instead of packing, padding-free (TRL's BFD packing), no gradient checkpointing,
   FlashAttention-2 instead of SDPA.
3. **embedder**: passages/s of ``Embedder.embed_passages`` (the index step's embedding call) with a
   random-weight multilingual-E5-small shape, the preset's batch and group size, on the same device.

Throughput counts non-padding tokens (``num_input_tokens_seen``) between the log lines of the last warm-up
step and the last step (``logging_steps=1``; each log line waits for the GPU, so the interval holds the
finished work). MFU = tokens/s x 4N / peak (``ptwiki_llm/training/flops.py`` derives 4N and says what N
counts); the peak comes from a table of datasheet figures keyed by the GPU's name, or ``--peak-tflops``.
Gradient accumulation is 1 unless ``--grad-accum`` says otherwise: an optimizer step over the LoRA
weights is negligible next to a 7B forward/backward, and each measured step stays short.

Usage (GPU): ``python benchmarks/gpu_train_throughput.py [--out DIR] [--time-budget-s 330]``
CPU smoke run: ``python benchmarks/gpu_train_throughput.py --shape tiny --device cpu --variants lora
--seq-len 64 --steps 3 --warmup-steps 1 --embedder-passages 64 --out /tmp/x``
Writes ``gpu_train_throughput.json`` and ``.md`` (``gpu_train_throughput_tiny.*`` for the tiny shape).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import RESULTS, benchmark_machine, write_results  # noqa: E402 - needs the sys.path line
from benchmarks.random_models import (  # noqa: E402
    E5_SHAPES,
    LLAMA_SHAPES,
    log_uniform_lengths,
    word_text,
    write_random_e5,
    write_random_llama,
)
from ptwiki_llm.overrides import merge  # noqa: E402
from ptwiki_llm.training.flops import lora_flops_per_token, matmul_params, mfu, peak_bf16_tflops  # noqa: E402

NAME = "gpu_train_throughput"
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "liger-kernel",
            "sentence-transformers", "flash-attn")
# One change each against the preset (configs/atena.yaml), in the order they run: what matters most first,
# so a run cut short by --time-budget-s still has the QLoRA and LoRA rows.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "qlora": ("the preset: NF4 QLoRA, packing (wrapped), gradient checkpointing, SDPA",
              {"train": {"quantization": "nf4"}}),
    "lora": ("LoRA on unquantized weights (bf16 on CUDA), otherwise the preset",
             {"train": {"quantization": "none"}}),
    "qlora-liger": ("QLoRA + Liger kernels (RMSNorm, SwiGLU, RoPE)",
                    {"train": {"quantization": "nf4", "use_liger_kernel": True}}),
    "qlora-padding-free": ("QLoRA, TRL padding-free (BFD packing, flattened batch, no pad tokens)",
                           {"train": {"quantization": "nf4", "packing_strategy": "bfd", "padding_free": True}}),
    "qlora-no-checkpointing": ("QLoRA without gradient checkpointing",
                               {"train": {"quantization": "nf4", "gradient_checkpointing": False}}),
    "qlora-padding": ("QLoRA, no packing: one text per row, padded to the longest in the batch",
                      {"train": {"quantization": "nf4", "packing": False}}),
    "lora-liger": ("LoRA (bf16) + Liger kernels", {"train": {"quantization": "none", "use_liger_kernel": True}}),
    "lora-no-checkpointing": ("LoRA (bf16) without gradient checkpointing",
                              {"train": {"quantization": "none", "gradient_checkpointing": False}}),
    "qlora-flash-attention-2": ("QLoRA with FlashAttention-2 instead of SDPA (needs the flash-attn package)",
                                {"train": {"quantization": "nf4"},
                                 "models": {"attn_implementation": "flash_attention_2"}}),
}
EMBEDDER_JOB = "embedder"
# What a CPU run changes so that the LoRA path runs there (QLoRA, paged AdamW and Liger need CUDA).
CPU_OVERRIDES = {"models": {"device": "cpu", "dtype": "float32"},
                 "train": {"optimizer": "adamw_torch", "dataloader_workers": 0},
                 "rag": {"embedding": {"device": "cpu"}}}
# Published tokens/s/GPU for Llama-2-7B (README's anchors): LLaMA-Factory's comparison and the HF / Unsloth post.
ANCHORS = [
    {"setup": "HF QLoRA", "tokens_per_s_per_gpu": 2415},
    {"setup": "Unsloth QLoRA (A100)", "tokens_per_s_per_gpu": 3726},
    {"setup": "Unsloth + FlashAttention-2 LoRA", "tokens_per_s_per_gpu": 4007},
    {"setup": "NeMo LoRA on H100 (FP8, packed)", "tokens_per_s_per_gpu": 25206},
]
PASSAGES_TO_PROJECT = 5_000_000  # about the full ptwiki (1.1 M articles) in 200-token chunks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(LLAMA_SHAPES), default="7b", help="model shape (tiny: CPU tests)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "atena.yaml", help="the GPU preset")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, run in this order (default all: {','.join(VARIANTS)})")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per variant, warm-up included")
    parser.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the measurement")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation (0 = the preset's)")
    parser.add_argument("--batch-size", type=int, default=0, help="sequences per device step (0 = the preset's)")
    parser.add_argument("--seq-len", type=int, default=0, help="tokens per sequence (0 = the preset's)")
    parser.add_argument("--min-text-tokens", type=int, default=64, help="shortest synthetic text, in tokens")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense bf16 peak of the GPU in TFLOP/s (default: from the table, by GPU name)")
    parser.add_argument("--embedder-passages", type=int, default=40000, help="passages embedded (0 = skip)")
    parser.add_argument("--time-budget-s", type=float, default=0,
                        help="skip variants that would end past this many seconds (0 = no limit)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / NAME,
                        help="model store and run folders (7B: about 14 GB; emptied first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one job in this (child) process
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.warmup_steps < 1 or args.steps <= args.warmup_steps:
        parser.error(f"--steps ({args.steps}) must exceed --warmup-steps ({args.warmup_steps}), which must be >= 1")
    for name in ("grad_accum", "batch_size", "seq_len", "embedder_passages"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.min_text_tokens < 1:
        parser.error("--min-text-tokens must be >= 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error("--peak-tflops must be positive")
    return args


# --- configuration: the preset with the benchmark's folders, sizes and one variant's change ---------------


def llama_name(shape: str) -> str:
    return f"llama-2-{shape}-shape-random"


def embedder_name(shape: str) -> str:
    return f"multilingual-e5-{shape}-shape-random"


def overrides(args: argparse.Namespace, variant: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the benchmark sets on top of the preset: folders, the random models, sizes, no eval or saves."""
    from ptwiki_llm.config import load_config

    preset = load_config(args.config, environ={}).train
    work = args.work.resolve()
    train: dict[str, Any] = {
        "max_steps": args.steps, "logging_steps": 1, "eval_steps": args.steps + 1, "save_steps": args.steps + 1,
        "heldout_eval": False, "max_train_examples": None, "resume": False, "num_processes": 1,
        "gradient_accumulation_steps": args.grad_accum or preset.gradient_accumulation_steps,
        "per_device_batch_size": args.batch_size or preset.per_device_batch_size,
        "max_seq_length": args.seq_len or preset.max_seq_length,
    }
    tree = {
        "workdir": str(work / "workdir"),
        "models": {"store": str(work / "models"),
                   "base": {"name": llama_name(args.shape), "path": None, "hub_id": None, "gguf_file": None},
                   "embedder": {"name": embedder_name(_e5_shape(args)), "path": None, "hub_id": None}},
        "mlflow": {"tracking_uri": None},
        "train": train,
    }
    if args.device == "cpu":
        tree = merge(tree, CPU_OVERRIDES)
    return merge(tree, variant or {})


def _e5_shape(args: argparse.Namespace) -> str:
    return "small" if args.shape == "7b" else "tiny"


def load_benchmark_config(args: argparse.Namespace, variant: dict[str, Any] | None = None) -> Any:
    from ptwiki_llm.config import load_config

    return load_config(args.config, overrides(args, variant), environ={})


def formatted_dir(args: argparse.Namespace) -> Path:
    return args.work.resolve() / "formatted"


# --- jobs, each in its own process --------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Random checkpoint + tokenizer into the model store, synthetic train split; the matmul ceiling on CUDA."""
    config = load_benchmark_config(args)
    train = config.train
    started = time.perf_counter()
    folder = write_random_llama(config.model_store / llama_name(args.shape), args.shape, args.device,
                                "bfloat16" if args.device == "cuda" else "float32", args.seed)
    write_seconds = time.perf_counter() - started
    vocab = LLAMA_SHAPES[args.shape]["vocab_size"]
    rng = random.Random(args.seed)
    # enough text for every variant: all steps' sequences packed, or one text per row unpacked, plus a margin
    rows = args.steps * train.per_device_batch_size * train.gradient_accumulation_steps
    need_tokens = int(1.25 * rows * train.max_seq_length)
    high = max(args.min_text_tokens, train.max_seq_length - 2)  # room for BOS and the EOS TRL appends
    texts: list[str] = []
    total = 0
    while total < need_tokens or len(texts) < int(1.25 * rows):
        length = log_uniform_lengths(rng, args.min_text_tokens, high, 1)[0]
        texts.append(word_text(rng, length, vocab))
        total += length
    target = formatted_dir(args)
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = {"model_dir": str(folder), "write_checkpoint_s": write_seconds,
           "checkpoint_bytes": sum(p.stat().st_size for p in folder.glob("*.safetensors")),
           "texts": len(texts), "text_tokens": total, "model_config": json.loads((folder / "config.json").read_text())}
    if args.device == "cuda":
        out["matmul_tflops_measured"] = matmul_tflops()
    return out


def matmul_tflops(size: int = 8192, repeats: int = 10) -> float:
    """bf16 TFLOP/s of a size^3 matmul on random data (mean of ``repeats`` after 3 warm-ups)."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def steady_throughput(log: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Tokens/s between the log lines of step ``warmup`` and of the last step (metrics.jsonl, logging_steps=1)."""
    lines = {int(e["step"]): e for e in log if "train.loss" in e and "train.tokens_seen" in e}
    if not lines or max(lines) <= warmup or warmup not in lines:
        raise ValueError(f"metrics log has steps {sorted(lines)}; need step {warmup} and a later one")
    first, last = lines[warmup], lines[max(lines)]
    tokens = last["train.tokens_seen"] - first["train.tokens_seen"]
    seconds = last["time"] - first["time"]
    return {"measured_steps": max(lines) - warmup, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "step_time_s": seconds / (max(lines) - warmup),
            "losses": [lines[s]["train.loss"] for s in sorted(lines)]}


def train_variant(args: argparse.Namespace, name: str) -> dict[str, Any]:
    import torch

    from ptwiki_llm.data.format import FormattedData
    from ptwiki_llm.training.metrics import METRICS_FILE, read_log
    from ptwiki_llm.training.trainer import run_training

    config = load_benchmark_config(args, merge({"train": {"run_dir": str(args.work.resolve() / "runs" / name)}},
                                                VARIANTS[name][1]))
    folder = formatted_dir(args)
    formatted = FormattedData(dir=str(folder), train=str(folder / "train.jsonl"), eval=None)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run_training(config, formatted, None, show_progress=False)
    wall = time.perf_counter() - started
    steady = steady_throughput(read_log(Path(result.run_dir) / METRICS_FILE), args.warmup_steps)
    out = {**steady, "wall_s": wall, "model_load_s": result.metrics.model_load_s, "dtype": result.dtype,
           "mixed_precision": result.mixed_precision, "global_step": result.metrics.global_step,
           "train_config": {k: result.train_config[k] for k in (
               "quantization", "packing", "packing_strategy", "padding_free", "use_liger_kernel",
               "gradient_checkpointing", "optimizer", "max_seq_length", "per_device_batch_size",
               "gradient_accumulation_steps")},
           "attn_implementation": config.models.attn_implementation}
    if args.device == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    else:
        out["peak_rss_gib"] = result.metrics.peak_memory_mb / 1024
    return out


def embedder_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Passages/s of the index step's embedding call (``Embedder.embed_passages``, one call per group)."""
    from ptwiki_llm.rag.embeddings import load_embedder

    config = load_benchmark_config(args)
    shape = _e5_shape(args)
    write_random_e5(config.model_store / embedder_name(shape), shape, args.seed)
    embedder = load_embedder(config)
    cfg = config.rag
    rng = random.Random(args.seed)
    vocab = E5_SHAPES[shape]["vocab_size"]
    # a full chunk: max_tokens body tokens under an 8-word heading (heading_in_embedding)
    texts = [word_text(rng, 8, vocab) + "\n" + word_text(rng, cfg.chunking.max_tokens, vocab)
             for _ in range(args.embedder_passages)]
    embedder.embed_passages(texts[: min(len(texts), 2 * cfg.embedding.batch_size)])  # warm-up
    tokens = sum(len(ids) for ids in embedder.tokenizer(texts[:256])["input_ids"]) / min(len(texts), 256)
    started = time.perf_counter()
    for begin in range(0, len(texts), cfg.embedding.group_size):
        embedder.embed_passages(texts[begin: begin + cfg.embedding.group_size])
    seconds = time.perf_counter() - started
    rate = len(texts) / seconds
    return {"model_shape": shape, "model_config": E5_SHAPES[shape], "passages": len(texts), "seconds": seconds,
            "passages_per_s": rate, "tokens_per_passage": tokens, "tokens_per_s": rate * tokens,
            "batch_size": cfg.embedding.batch_size, "group_size": cfg.embedding.group_size,
            "precision": embedder.precision, "device": embedder.device,
            "projected_hours_for_5m_passages": PASSAGES_TO_PROJECT / rate / 3600,
            "projection_note": (f"computed, not measured: {PASSAGES_TO_PROJECT:,} passages / the measured "
                                "passages/s; embedding only (no chunking, existence checks or store writes)")}


def _child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.one == "prepare":
            out = prepare(args)
        elif args.one == EMBEDDER_JOB:
            out = embedder_throughput(args)
        else:
            out = train_variant(args, args.one)
        out["status"] = "ok"
    except Exception as exc:  # reported as the job's result; the parent goes on with the next job
        out = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:3000],
               "traceback": traceback.format_exc()[-3000:]}
    print("RESULT " + json.dumps(out, default=str), flush=True)


def run_job(args: argparse.Namespace, job: str, timeout: float | None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), *_forwarded(args), "--one", job]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-2000:]
        return {"status": "timed out", "error": f"stopped after {timeout:.0f} s (time budget)",
                "output_tail": str(tail)}
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        return {"status": "failed", "error": f"exit code {done.returncode}, no result",
                "output_tail": (done.stdout[-2000:] + "\n" + done.stderr[-3000:])}
    out = json.loads(lines[-1].removeprefix("RESULT "))
    out["job_s"] = time.perf_counter() - started
    if out["status"] != "ok":
        out["stderr_tail"] = done.stderr[-3000:]
    return out


def _forwarded(args: argparse.Namespace) -> list[str]:
    return ["--shape", args.shape, "--device", args.device, "--config", str(args.config), "--steps", str(args.steps),
            "--warmup-steps", str(args.warmup_steps), "--grad-accum", str(args.grad_accum),
            "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
            "--min-text-tokens", str(args.min_text_tokens), "--embedder-passages", str(args.embedder_passages),
            "--work", str(args.work), "--seed", str(args.seed)]


# --- the parent: GPU facts, jobs in order under the time budget, results --------------------------------------


def gpu_info() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    driver = None
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.strip().splitlines()[0]
    return {"name": torch.cuda.get_device_name(0), "driver": driver, "cuda": torch.version.cuda,
            "torch": torch.__version__, "memory_gib": props.total_memory / 2**30,
            "multiprocessors": props.multi_processor_count, "count": torch.cuda.device_count()}


def resolve_peak(args: argparse.Namespace, gpu: dict[str, Any] | None) -> dict[str, Any] | None:
    """The dense bf16 peak for MFU: --peak-tflops, else the table; an unknown GPU stops the run before any work."""
    if gpu is None:
        return None
    if args.peak_tflops is not None:
        return {"tflops": args.peak_tflops, "source": "--peak-tflops"}
    tflops, source = peak_bf16_tflops(gpu["name"])  # UnknownGpuError names --peak-tflops
    return {"tflops": tflops, "source": source}


def score(entry: dict[str, Any], n_params: int, peak: dict[str, Any] | None, matmul: float | None) -> None:
    """Adds tokens/s per GPU and MFU (vs the datasheet peak and vs the measured matmul) to a variant's entry."""
    if entry.get("status") != "ok":
        return
    entry["tokens_per_s_per_gpu"] = entry["tokens_per_s"]  # one GPU, one process
    if peak:
        entry["mfu"] = mfu(entry["tokens_per_s"], n_params, peak["tflops"])
    if matmul:
        entry["mfu_of_measured_matmul"] = mfu(entry["tokens_per_s"], n_params, matmul)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.one:
        _child(args)
        return None
    from ptwiki_llm.training.flops import UnknownGpuError

    gpu = None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but no CUDA GPU is visible; a CPU smoke run: --shape tiny --device cpu")
        gpu = gpu_info()
    try:
        peak = resolve_peak(args, gpu)
    except UnknownGpuError as exc:
        raise SystemExit(str(exc)) from exc
    began = time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    config = load_benchmark_config(args)
    train = config.train
    result: dict[str, Any] = {
        "benchmark": NAME,
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "shape": args.shape, "device": args.device, "gpu": gpu, "peak_bf16": peak,
        "machine": benchmark_machine(*PACKAGES),
        "preset": str(Path(args.config).resolve().relative_to(REPO)) if Path(args.config).resolve().is_relative_to(
            REPO) else str(args.config),
        "settings": {"steps": args.steps, "warmup_steps": args.warmup_steps,
                     "max_seq_length": train.max_seq_length, "per_device_batch_size": train.per_device_batch_size,
                     "gradient_accumulation_steps": train.gradient_accumulation_steps,
                     "text_tokens": [args.min_text_tokens, train.max_seq_length], "lora": train.lora.model_dump(),
                     "time_budget_s": args.time_budget_s},
        "anchors": ANCHORS, "variants": {}, "embedder": None,
    }
    name = NAME if args.shape == "7b" else f"{NAME}_{args.shape}"

    def save() -> None:
        result["elapsed_s"] = time.perf_counter() - began
        write_results(name, result, markdown(result), args.out)

    prep = run_job(args, "prepare", None)
    result["prepare"] = {k: v for k, v in prep.items() if k != "model_config"}
    if prep["status"] != "ok":
        save()
        raise SystemExit(f"prepare failed: {prep.get('error')}\n{prep.get('output_tail', prep.get('stderr_tail'))}")
    n_params = matmul_params(prep["model_config"])
    result["model"] = {"name": llama_name(args.shape), "config": {k: prep["model_config"].get(k) for k in
                                                                   LLAMA_SHAPES[args.shape]},
                       "n_matmul_params": n_params, "flops_per_token": lora_flops_per_token(n_params),
                       "flops_note": "4N per token (ptwiki_llm/training/flops.py): forward 2N + backward through "
                                     "activations 2N, no weight gradients of the frozen base; N = decoder linear "
                                     "weights + LM head (no embedding, norms or adapters); recomputation and "
                                     "attention scores not counted"}
    matmul = prep.get("matmul_tflops_measured")
    jobs = list(args.variants)
    if args.embedder_passages:
        jobs.insert(min(2, len(jobs)), EMBEDDER_JOB)
    longest = 0.0
    for job in jobs:
        left = args.time_budget_s - (time.perf_counter() - began) if args.time_budget_s else None
        if left is not None and left < max(longest, 30.0):
            entry = {"status": "skipped",
                     "error": f"time budget: {left:.0f} s left, the longest job took {longest:.0f} s"}
        else:
            print(f"[{time.perf_counter() - began:6.0f} s] {job} ...", flush=True)
            entry = run_job(args, job, left)
            longest = max(longest, entry.get("job_s", 0.0))
        if job == EMBEDDER_JOB:
            result["embedder"] = entry
        else:
            entry["description"], entry["change"] = VARIANTS[job]
            score(entry, n_params, peak, matmul)
            result["variants"][job] = entry
        print(f"    {job}: {_summary(entry)}", flush=True)
        save()
    return result


def _summary(entry: dict[str, Any]) -> str:
    if entry.get("status") != "ok":
        return f"{entry.get('status')}: {entry.get('error')}"
    if "passages_per_s" in entry:
        return f"{entry['passages_per_s']:.0f} passages/s"
    mfu_text = f", MFU {entry['mfu']:.1%}" if "mfu" in entry else ""
    return f"{entry['tokens_per_s']:.0f} tokens/s{mfu_text}, loss {entry['losses'][-1]:.3f}"


def markdown(result: dict[str, Any]) -> str:
    gpu, settings = result["gpu"], result["settings"]
    where = (f"{gpu['name']} ({gpu['memory_gib']:.0f} GiB), driver {gpu['driver']}, CUDA {gpu['cuda']}, torch "
             f"{gpu['torch']}" if gpu else f"CPU: {result['machine']['cpu_model']} (shared machine; a smoke run, "
             "not a speed result)")
    lines = [
        "# LoRA/QLoRA training throughput through the train step's code", "",
        f"{result['date_utc']}, {where}. Model: {result.get('model', {}).get('name')} (random weights), preset "
        f"`{result['preset']}`; {settings['steps']} steps, first {settings['warmup_steps']} not measured; "
        f"{settings['per_device_batch_size']} x {settings['max_seq_length']} tokens per step, gradient "
        f"accumulation {settings['gradient_accumulation_steps']}; synthetic texts of "
        f"{settings['text_tokens'][0]}-{settings['text_tokens'][1]} tokens (log-uniform).", "",
    ]
    if result.get("model"):
        model = result["model"]
        lines += [f"N = {model['n_matmul_params']:,} matmul weights; {model['flops_note']}.", ""]
    if result["peak_bf16"]:
        lines += [f"Peak dense bf16: {result['peak_bf16']['tflops']} TFLOP/s ({result['peak_bf16']['source']}); "
                  f"measured 8192^3 bf16 matmul: {result['prepare'].get('matmul_tflops_measured') or 0:.0f} TFLOP/s.",
                  ""]
    lines += ["| variant | tokens/s/GPU | MFU | MFU of measured matmul | peak memory (GiB) | step (s) | "
              "first -> last loss | status |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for job, entry in result["variants"].items():
        if entry.get("status") == "ok":
            memory = entry.get("peak_memory_gib", entry.get("peak_rss_gib"))
            lines.append(
                f"| {job} | {entry['tokens_per_s']:,.0f} | {_pct(entry.get('mfu'))} | "
                f"{_pct(entry.get('mfu_of_measured_matmul'))} | {memory:.1f} | {entry['step_time_s']:.2f} | "
                f"{entry['losses'][0]:.3f} -> {entry['losses'][-1]:.3f} | ok |")
        else:
            lines.append(f"| {job} | | | | | | | {entry.get('status')}: {str(entry.get('error'))[:160]} |")
    lines += ["", "Variants (one change each against the preset):", ""]
    lines += [f"- `{job}`: {entry['description']}" for job, entry in result["variants"].items()]
    embedder = result.get("embedder")
    if embedder and embedder.get("status") == "ok":
        lines += ["", f"Embedder (index step's `Embedder.embed_passages`, random-weight E5-{embedder['model_shape']} "
                  f"shape, {embedder['precision']}, batch {embedder['batch_size']}, group {embedder['group_size']}): "
                  f"**{embedder['passages_per_s']:,.0f} passages/s** ({embedder['tokens_per_passage']:.0f} tokens "
                  f"each, {embedder['passages']:,} passages). Projected time for {PASSAGES_TO_PROJECT:,} passages: "
                  f"{embedder['projected_hours_for_5m_passages']:.2f} h ({embedder['projection_note']})."]
    elif embedder:
        lines += ["", f"Embedder: {embedder.get('status')}: {embedder.get('error')}"]
    lines += ["", "Anchors (published, Llama-2-7B, tokens/s/GPU): " + "; ".join(
        f"{a['setup']} {a['tokens_per_s_per_gpu']:,}" for a in result["anchors"]) + ".", ""]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "n/a"


if __name__ == "__main__":
    main()
