"""Benchmark: the pipeline's train step vs a plain TRL ``SFTTrainer`` script, same model, data and settings.

Both train the configured base (default: SmolLM2-135M, the GGUF converted once into the model store)
with the same LoRA settings, sequence length, batch, optimizer, eval and checkpoint intervals on the
same seeded sample of the real formatted ptwiki data. Each measurement runs in a fresh process, and
the order alternates between repeats, so neither side gets a warm cache.

- **train step**: ``ptwiki_llm.stages.train_stage`` with everything it adds: MLflow nested run and
  per-step metrics, JSONL metrics log, preemption watcher, checkpoint bookkeeping, held-out
  perplexity before and after (outside the Trainer's loop; reported separately).
- **plain TRL**: ``AutoModelForCausalLM.from_pretrained`` + ``LoraConfig`` + ``SFTConfig`` +
  ``SFTTrainer.train()``, nothing else.

The compared number is training throughput: tokens seen (``num_input_tokens_seen``, non-padding)
per second of ``SFTTrainer.train`` (the training loop with its periodic eval, checkpoint saves and,
for the train step, its callbacks; model loading excluded), both per wall-clock second and per CPU
second of the process. On a shared machine the CPU-time figure is the robust one: run with
``OMP_NUM_THREADS=1`` so spinning OpenMP threads do not count as work. The goal is overhead <= 5 %.

Usage: ``python benchmarks/train_vs_trl.py --formatted DIR [--steps N] [--repeats R]``, where DIR holds
``train.jsonl``/``eval.jsonl`` (``ptwiki-llm data`` prints it). Writes
``benchmarks/results/train_vs_trl.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import write_results  # noqa: E402 - needs the sys.path line above
from ptwiki_llm.data.format import FormattedData  # noqa: E402


def _config(args: argparse.Namespace, workdir: Path) -> Any:
    from ptwiki_llm.config import load_config

    overrides: dict[str, Any] = {"workdir": str(workdir), "models": {"store": str(args.store)}, "train": {}}
    if args.steps:
        overrides["train"]["max_steps"] = args.steps
    if args.bf16_autocast:
        overrides["train"]["bf16_autocast"] = args.bf16_autocast
    return load_config(args.config, overrides)


def run_pipeline_step(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ptwiki_llm.stages import train_stage

    config = _config(args, workdir)
    started = time.perf_counter()
    result = train_stage(config, FormattedData.from_folder(args.formatted), pipeline_run_id="benchmark",
                         show_progress=False)
    wall = time.perf_counter() - started
    metrics = result.metrics
    return {
        "tokens": metrics.tokens_this_session,
        "train_runtime_s": metrics.train_runtime_s,
        "tokens_per_s": metrics.tokens_this_session / metrics.train_runtime_s,
        "step_wall_s": wall,
        "heldout": result.heldout.model_dump(),
        "peak_memory_mb": metrics.peak_memory_mb,
    }


def run_plain_trl(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """What someone would write by hand: load, wrap with LoRA, SFTTrainer.train(). Same values as the config."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ptwiki_llm.models.runtime import bf16_autocast
    from ptwiki_llm.training.data import load_splits  # the identical seeded sample of the same files

    config = _config(args, workdir)
    train = config.train
    train_texts, eval_texts = load_splits(FormattedData.from_folder(args.formatted), train.max_train_examples,
                                          train.max_eval_examples, config.seed)
    model_dir = args.store / config.models.base.name
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(workdir / "plain"), seed=config.seed, data_seed=config.seed, max_steps=train.max_steps,
            per_device_train_batch_size=train.per_device_batch_size,
            per_device_eval_batch_size=train.per_device_batch_size,
            gradient_accumulation_steps=train.gradient_accumulation_steps, learning_rate=train.learning_rate,
            lr_scheduler_type=train.lr_scheduler, warmup_steps=train.warmup_steps, optim=train.optimizer,
            activation_checkpointing=train.gradient_checkpointing, use_cpu=True, fp16=False,
            bf16=bf16_autocast(train.bf16_autocast, "cpu"),  # the precision the train step resolves
            logging_steps=train.logging_steps, eval_strategy="steps", eval_steps=train.eval_steps,
            save_strategy="steps", save_steps=train.save_steps, save_total_limit=train.save_total_limit,
            report_to="none", disable_tqdm=True, include_num_input_tokens_seen="non_padding",
            max_length=train.max_seq_length, packing=train.packing, packing_strategy=train.packing_strategy,
            completion_only_loss=False,
        ),
        train_dataset=Dataset.from_dict({"text": train_texts}),
        eval_dataset=Dataset.from_dict({"text": eval_texts}),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                               target_modules=list(train.lora.target_modules), task_type="CAUSAL_LM"),
    )
    output = trainer.train()
    wall = time.perf_counter() - started
    tokens = trainer.state.num_input_tokens_seen
    return {"tokens": tokens, "train_runtime_s": output.metrics["train_runtime"],
            "tokens_per_s": tokens / output.metrics["train_runtime"], "step_wall_s": wall}


def _time_trainer_train() -> dict[str, float]:
    """Wall and CPU seconds of ``SFTTrainer.train`` (both sides call it; callbacks run inside it)."""
    from trl import SFTTrainer

    timing: dict[str, float] = {}
    original = SFTTrainer.train

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            timing["train_wall_s"] = time.perf_counter() - wall
            timing["train_cpu_s"] = time.process_time() - cpu

    SFTTrainer.train = timed
    return timing


def _child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    timing = _time_trainer_train()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        runner = run_pipeline_step if args.one == "pipeline" else run_plain_trl
        measured = runner(args, Path(tmp))
    measured.update(timing)
    measured["tokens_per_cpu_s"] = measured["tokens"] / timing["train_cpu_s"]
    measured["threads"] = __import__("torch").get_num_threads()
    print("RESULT " + json.dumps(measured))


def _measure(args: argparse.Namespace, which: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", which, "--formatted", str(args.formatted), "--config",
               str(args.config), "--store", str(args.store)]
    if args.steps:
        command += ["--steps", str(args.steps)]
    if args.bf16_autocast:
        command += ["--bf16-autocast", args.bf16_autocast]
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{which} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    measured = json.loads(line.removeprefix("RESULT "))
    measured["load_average_before"] = load_before
    measured["load_average_after"] = os.getloadavg()[0]
    print(f"{which}: {measured['tokens_per_s']:.1f} tokens/s ({measured['tokens']} tokens in "
          f"{measured['train_runtime_s']:.1f} s; step wall {measured['step_wall_s']:.1f} s)", flush=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formatted", type=Path, required=True, help="folder with train.jsonl and eval.jsonl")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "local.yaml")
    parser.add_argument("--store", type=Path, default=None, help="model store (default: the config's)")
    parser.add_argument("--steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bf16-autocast", choices=["auto", "true", "false"], help="override train.bf16_autocast")
    parser.add_argument("--one", choices=["pipeline", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.store is None:
        from ptwiki_llm.config import load_config

        args.store = load_config(args.config).model_store
    if args.one:
        _child(args)
        return

    from ptwiki_llm.models.runtime import bf16_autocast
    from ptwiki_llm.models.staging import model_weights_dir
    from ptwiki_llm.provenance import machine_info, package_versions

    config = _config(args, Path(tempfile.gettempdir()))
    model_weights_dir(config)  # convert the GGUF once, outside the measurements
    runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "plain": []}
    for repeat in range(args.repeats):
        order = ("pipeline", "plain") if repeat % 2 == 0 else ("plain", "pipeline")
        for which in order:
            runs[which].append(_measure(args, which))

    def best(which: str, key: str = "tokens_per_s") -> float:
        return max(r[key] for r in runs[which])

    def mean(which: str, key: str = "tokens_per_s") -> float:
        return sum(r[key] for r in runs[which]) / len(runs[which])

    overhead_best = 1 - best("pipeline") / best("plain")
    overhead_mean = 1 - mean("pipeline") / mean("plain")
    overhead_cpu = 1 - mean("pipeline", "tokens_per_cpu_s") / mean("plain", "tokens_per_cpu_s")
    train = config.train
    settings = {"model": config.models.base.name, "max_steps": args.steps or train.max_steps,
                "max_seq_length": train.max_seq_length, "per_device_batch_size": train.per_device_batch_size,
                "lora_r": train.lora.r, "target_modules": train.lora.target_modules, "optimizer": train.optimizer,
                "eval_steps": train.eval_steps, "save_steps": train.save_steps, "device": "cpu", "dtype": "float32",
                "bf16_autocast": bf16_autocast(train.bf16_autocast, "cpu")}
    result = {
        "benchmark": "train_vs_trl",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "packages": package_versions(("torch", "transformers", "peft", "trl", "mlflow")),
        "formatted": str(args.formatted),
        "settings": settings,
        "runs": runs,
        "tokens_per_s": {"pipeline_best": best("pipeline"), "plain_best": best("plain"),
                         "pipeline_mean": mean("pipeline"), "plain_mean": mean("plain")},
        "tokens_per_cpu_s": {"pipeline_mean": mean("pipeline", "tokens_per_cpu_s"),
                             "plain_mean": mean("plain", "tokens_per_cpu_s")},
        "overhead_best": overhead_best,
        "overhead_mean": overhead_mean,
        "overhead_cpu_time": overhead_cpu,
        "goal_overhead_max": 0.05,
    }
    lines = [
        "# Train step vs plain TRL SFTTrainer",
        "",
        f"{result['date']}, {result['machine']['cpu']} ({result['machine']['cores']} cores), CPU fp32"
        f"{' weights with bf16 autocast' if settings['bf16_autocast'] else ''}, "
        f"{settings['model']}, {settings['max_steps']} steps x {settings['per_device_batch_size']} x "
        f"{settings['max_seq_length']} tokens, LoRA r={settings['lora_r']}, real formatted ptwiki sample.",
        "",
        f"Torch threads per process: {runs['plain'][0]['threads']}.",
        "",
        "| run | train step tokens/s | plain TRL tokens/s | train step tokens/CPU-s | plain tokens/CPU-s "
        "| train step wall (s) | plain wall (s) | load avg (ours / plain) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for i, (ours, plain) in enumerate(zip(runs["pipeline"], runs["plain"], strict=True), 1):
        lines.append(f"| {i} | {ours['tokens_per_s']:.1f} | {plain['tokens_per_s']:.1f} | "
                     f"{ours['tokens_per_cpu_s']:.1f} | {plain['tokens_per_cpu_s']:.1f} | {ours['step_wall_s']:.1f} | "
                     f"{plain['step_wall_s']:.1f} | {ours['load_average_before']:.1f} / "
                     f"{plain['load_average_before']:.1f} |")
    lines += [
        "",
        f"Pipeline overhead on training throughput: **{overhead_cpu:+.1%}** in tokens per CPU-second of "
        f"`SFTTrainer.train` (mean; robust to other processes on the machine), {overhead_mean:+.1%} in "
        f"tokens per wall-second (mean), {overhead_best:+.1%} (best of each); goal <= 5 %.",
        "",
        "The train step's extra wall time is mostly the held-out perplexity pass before and after training "
        "(outside the Trainer loop) and MLflow logging. A load average above the core count means other "
        "processes shared the CPU during that run.",
        "",
    ]
    write_results("train_vs_trl", result, "\n".join(lines))


if __name__ == "__main__":
    main()
