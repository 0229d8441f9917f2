"""One training run: formatted JSONL -> LoRA/QLoRA adapter with TRL's SFTTrainer, resumable and preemptible.

Runs the same in one process (CPU or one GPU) and in every rank of ``torchrun``/``accelerate launch``;
only rank 0 writes the result, the metrics log and MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm.config import Config
from ptwiki_llm.provenance import machine_info, package_versions, sha256_json
from ptwiki_llm.training.data import check_sequence_length, load_splits, raw_heldout_texts
from ptwiki_llm.training.heldout import heldout_metrics
from ptwiki_llm.training.metrics import METRICS_FILE, MetricsCallback, MlflowSink, peak_memory_mb, truncate_log
from ptwiki_llm.training.preemption import (
    PreemptionCallback,
    PreemptionWatcher,
    TrainingCancelled,
    latest_checkpoint,
)
from ptwiki_llm.training.result import BaseWeights, HeldoutComparison, TrainMetrics, TrainResult
from ptwiki_llm.training.settings import lora_config, mixed_precision, quantization_config, sft_config

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
TRAIN_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "mlflow")


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from the torchrun/accelerate environment."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def run_key(config: Config, formatted: FormattedData, base_manifest: dict[str, Any]) -> str:
    """Names the run folder: the same data, base weights and settings resume the same run after a requeue."""
    return sha256_json({
        "train": config.train.model_dump(exclude={"resume", "run_dir"}),
        "seed": config.seed,
        "dtype": config.models.dtype,
        "base": base_manifest.get("weights_sha256"),
        "data": {split: formatted.sha256(split) or getattr(formatted, split)
                 for split in ("train", "eval", "eval_raw", "knowledge_train")},
        "world_size": config.train.num_processes,
    })[:16]


def run_dir_for(config: Config, formatted: FormattedData) -> Path:
    from ptwiki_llm.models.staging import model_weights_dir, stage_manifest

    model_weights_dir(config)  # stages a local GGUF/folder once, or fails naming `models stage`
    manifest = stage_manifest(config.models.base, config) or {}
    return config.expand(config.train.run_dir) / run_key(config, formatted, manifest)


def base_pointer(config: Config) -> BaseWeights:
    """What the adapter was trained on: the staged folder plus its content hash and origin."""
    from ptwiki_llm.models.staging import stage_manifest, stored_model_dir

    ref = config.models.base
    manifest = stage_manifest(ref, config) or {}
    return BaseWeights(name=ref.name, path=str(stored_model_dir(ref, config)),
                       weights_sha256=manifest.get("weights_sha256"), hub_id=ref.hub_id,
                       revision=manifest.get("source", {}).get("revision") or ref.revision,
                       source=manifest.get("source", {}))


def hardware(device: str) -> dict[str, Any]:
    import torch

    info = machine_info()
    info["device"] = device
    info["torch_threads"] = torch.get_num_threads()
    if device == "cuda":
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


def run_training(config: Config, formatted: FormattedData, mlflow_run_id: str | None = None,
                 show_progress: bool = True) -> TrainResult:
    """Train (or resume) the adapter; returns the result (also written to ``run_dir/result.json``).

    Raises TrainingPreempted (exit code 75) after saving a checkpoint when SIGUSR1 or a STOP file asked it to
    stop, TrainingCancelled (exit code 143, never requeued) when SIGTERM did. Bad input (no GPU for 'cuda',
    empty split, sequence longer than the model's context, QLoRA on CPU) fails before the model loads.
    """
    import torch

    from ptwiki_llm.models.runtime import context_length, resolve_device, resolve_dtype
    from ptwiki_llm.models.staging import model_weights_dir

    train = config.train
    rank, local_rank, world_size = world()
    device = resolve_device(config)  # 'cuda' without a GPU fails here, before any work
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    train_texts, eval_texts = load_splits(formatted, train.max_train_examples, train.max_eval_examples, config.seed)
    check_sequence_length(train.max_seq_length, context_length(model_weights_dir(config)), config.models.base.name)
    run_dir = run_dir_for(config, formatted)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    dtype_name = str(resolve_dtype(config, device)).removeprefix("torch.")
    quant = quantization_config(config, device)
    # Built before the model loads: with FSDP it sets the environment that makes from_pretrained load on
    # rank 0 only (cpu_ram_efficient_loading).
    args = sft_config(config, run_dir / "checkpoints", device, dtype_name, has_eval=bool(eval_texts))
    run = _Run(config=config, formatted=formatted, run_dir=run_dir, device=device, dtype_name=dtype_name,
               quant=quant, is_main=rank == 0, world_size=world_size, show_progress=show_progress,
               sink=MlflowSink(mlflow_run_id if rank == 0 else None))
    # Installed before the model loads: a warning from SLURM at any point ends the run cleanly (exit 75).
    with PreemptionWatcher(run_dir) as watcher:
        return run.train(args, train_texts, eval_texts, watcher)


@dataclass
class _Run:
    """One training session in one process (rank)."""

    config: Config
    formatted: FormattedData
    run_dir: Path
    device: str
    dtype_name: str
    quant: Any
    is_main: bool
    world_size: int
    show_progress: bool
    sink: MlflowSink

    @property
    def log_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def output_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def train(self, args: Any, train_texts: list[str], eval_texts: list[str],
              watcher: PreemptionWatcher) -> TrainResult:
        from datasets import Dataset
        from transformers import set_seed
        from transformers.trainer_callback import ProgressCallback
        from trl import SFTTrainer

        from ptwiki_llm.models.runtime import load_causal_lm

        cfg = self.config.train
        set_seed(self.config.seed)
        started = time.time()
        # FSDP shards from CPU weights; everything else goes straight to the device
        model, tokenizer = load_causal_lm(self.config, quantization_config=self.quant,
                                          device_map="cpu" if cfg.fsdp and self.quant is None else None)
        model.config.use_cache = False
        tokenizer.padding_side = "right"
        load_seconds = time.time() - started
        checkpoint = latest_checkpoint(self.output_dir) if cfg.resume else None
        resumed_from = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
        peft_config = lora_config(cfg)
        if self.is_main:
            self._continue_log(checkpoint, resumed_from)
            _log_setup(self.sink, self.config, self.device, self.dtype_name, mixed_precision(args), self.quant,
                       peft_config, self.world_size, self.run_dir, checkpoint)

        # held-out perplexity and bits/byte on raw article text of the eval split, never the templated examples
        raw_texts = (raw_heldout_texts(self.formatted, cfg.max_eval_examples, cfg.heldout_max_chars,
                                       self.config.seed + 1) if cfg.heldout_eval else [])
        heldout_on = cfg.heldout_eval and bool(raw_texts) and not cfg.fsdp
        if cfg.heldout_eval and cfg.fsdp:
            logger.warning("no held-out perplexity under FSDP (sharded weights); the evaluate step measures it")
        before = self._heldout_base(model, tokenizer, raw_texts) if heldout_on else None
        if before and self.is_main:
            self.sink.metrics({f"heldout.base.{k}": v for k, v in before.items()}, resumed_from)

        metrics_cb = MetricsCallback(self.log_path, self.sink, self.device)
        preempt_cb = PreemptionCallback(watcher)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict({"text": train_texts}),
            eval_dataset=Dataset.from_dict({"text": eval_texts}) if eval_texts else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[metrics_cb, preempt_cb],
        )
        if not self.show_progress:
            trainer.remove_callback(ProgressCallback)
        if watcher.requested:  # asked to stop while loading: the latest checkpoint is still the one to resume
            _stop(self.run_dir, self.is_main, checkpoint, resumed_from, watcher)
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if preempt_cb.stopped_at is not None:
            _stop(self.run_dir, self.is_main, latest_checkpoint(self.output_dir), trainer.state.global_step, watcher)

        adapter_dir = self.run_dir / "adapter"
        trainer.save_model(str(adapter_dir))  # PEFT: adapter weights + config only (the main process writes)
        if self.is_main:
            tokenizer.save_pretrained(str(adapter_dir))
        after = heldout_metrics(trainer.model_wrapped, tokenizer, raw_texts, cfg.max_seq_length,
                                self.show_progress and self.is_main) if heldout_on else None
        result = self._result(adapter_dir, trainer, output, metrics_cb, resumed_from, load_seconds,
                              {"base": before, "tuned": after}, {"train": len(train_texts), "eval": len(eval_texts)})
        if self.is_main:
            _finish_logging(self.sink, result, self.run_dir)
            _write_result(self.run_dir, result.model_dump(mode="json"))
        return result

    def _continue_log(self, checkpoint: Path | None, resumed_from: int) -> None:
        """Cut the metrics log back to the checkpoint and replay it, so the new MLflow run's curves continue."""
        if checkpoint is None:
            self.log_path.unlink(missing_ok=True)
            return
        for entry in truncate_log(self.log_path, resumed_from):
            self.sink.metrics({k: v for k, v in entry.items() if k not in ("step", "time")}, entry["step"])

    def _heldout_base(self, model: Any, tokenizer: Any, texts: list[str]) -> dict[str, float]:
        """The base model's score, computed once per run folder (a resumed run reuses it)."""
        path = self.run_dir / "heldout_base_raw.json"  # raw article text; earlier runs scored templated examples
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        scores = heldout_metrics(model, tokenizer, texts, self.config.train.max_seq_length,
                                 self.show_progress and self.is_main)
        if self.is_main:
            path.write_text(json.dumps(scores, indent=2), encoding="utf-8")
        return scores

    def _result(self, adapter_dir: Path, trainer: Any, output: Any, metrics_cb: MetricsCallback, resumed_from: int,
                load_seconds: float, heldout: dict[str, Any], examples: dict[str, int]) -> TrainResult:
        tokens, runtime = metrics_cb.tokens_timed, output.metrics.get("train_runtime")
        metrics = TrainMetrics(
            global_step=trainer.state.global_step,
            resumed_from_step=resumed_from,
            train_runtime_s=runtime,
            train_loss_mean=output.metrics.get("train_loss"),
            tokens_this_session=tokens,
            tokens_per_s=tokens / metrics_cb.step_seconds if metrics_cb.step_seconds else None,
            step_time_s=metrics_cb.step_seconds / metrics_cb.steps_timed if metrics_cb.steps_timed else None,
            tokens_per_s_wall=tokens / runtime if runtime else None,
            peak_memory_mb=peak_memory_mb(self.device),
            model_load_s=load_seconds,
            last_eval_loss=_last(trainer.state.log_history, "eval_loss"),
        )
        return TrainResult(
            status="completed", run_dir=str(self.run_dir), adapter_dir=str(adapter_dir),
            base=base_pointer(self.config), train=self.formatted.train, eval=self.formatted.eval,
            dataset_sha256=self.formatted.dataset_sha256, train_sha256=self.formatted.sha256("train"),
            eval_sha256=self.formatted.sha256("eval"), config_sha256=self.config.digest(),
            train_config=self.config.train.model_dump(mode="json"), device=self.device, dtype=self.dtype_name,
            mixed_precision=mixed_precision(trainer.args), world_size=self.world_size, examples=examples,
            metrics=metrics, heldout=HeldoutComparison.model_validate(heldout), mlflow_run_id=self.sink.run_id)


def _stop(run_dir: Path, is_main: bool, checkpoint: Path | None, step: int, watcher: PreemptionWatcher) -> None:
    stopped = watcher.stop(str(checkpoint) if checkpoint else None, step)
    if is_main:
        _write_result(run_dir, {"status": "cancelled" if isinstance(stopped, TrainingCancelled) else "preempted",
                                "global_step": step, "checkpoint": stopped.checkpoint,
                                "signal": stopped.signal_name})
    raise stopped


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return values[-1] if values else None


def _write_result(run_dir: Path, result: dict[str, Any]) -> None:
    partial = run_dir / (RESULT_FILE + ".partial")
    partial.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    partial.replace(run_dir / RESULT_FILE)


def _log_setup(sink: MlflowSink, config: Config, device: str, dtype_name: str, precision: str, quant: Any,
               peft_config: Any, world_size: int, run_dir: Path, checkpoint: Path | None) -> None:
    if sink.run_id is None:
        return
    from ptwiki_llm import tracking

    client = sink.client
    params = {f"train.{k}": v for k, v in tracking.flatten(config.train.model_dump(mode="json")).items()}
    params.update({
        "train.device": device, "train.dtype": dtype_name, "train.mixed_precision": precision,
        "train.world_size": world_size,
        "train.base_model": config.models.base.name, "train.run_dir": str(run_dir),
        "train.resumed_from": str(checkpoint) if checkpoint else "",
        "lora.config": json.dumps(peft_config.to_dict(), default=str, sort_keys=True),
        "quantization.config": json.dumps(quant.to_dict(), default=str, sort_keys=True) if quant else "none",
    })
    from mlflow.entities import Param

    client.log_batch(sink.run_id, params=[Param(k, _param(v)) for k, v in sorted(params.items())])
    client.set_tag(sink.run_id, "ptwiki.train.run_dir", str(run_dir))
    with _temp_json({"config": config.to_dict(), "hardware": hardware(device),
                     "packages": package_versions(TRAIN_PACKAGES)}) as path:
        client.log_artifact(sink.run_id, str(path), "train")
    for key, value in hardware(device).items():
        client.set_tag(sink.run_id, f"hardware.{key}", str(value)[:5000])


def _finish_logging(sink: MlflowSink, result: TrainResult, run_dir: Path) -> None:
    if sink.run_id is None:
        return
    step = result.metrics.global_step
    values = {f"train.final.{k}": v for k, v in result.metrics.model_dump().items() if isinstance(v, int | float)}
    for name, scores in result.heldout.model_dump().items():
        values.update({f"heldout.{name}.{k}": v for k, v in (scores or {}).items()})
    base, tuned = result.heldout.base, result.heldout.tuned
    if base and tuned:
        values["heldout.perplexity_ratio"] = tuned.perplexity / base.perplexity
    sink.metrics(values, step)
    client = sink.client
    client.log_artifacts(sink.run_id, result.adapter_dir, "adapter")
    client.log_artifact(sink.run_id, str(run_dir / METRICS_FILE), "train")
    with _temp_json(result.model_dump(mode="json"), "result.json") as path:
        client.log_artifact(sink.run_id, str(path), "train")


@contextmanager
def _temp_json(value: Any, name: str = "setup.json") -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(value, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
        yield path


def _param(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, list | dict) else str(value)
    return text[:6000]  # MLflow's parameter length limit
