"""QLoRA on CUDA through the train step's code: two steps with a stop (checkpoint) after the first, then the
rerun resumes from that checkpoint and finishes. Uses the GPU preset (configs/atena.yaml: NF4 + double
quantization, bf16, paged AdamW, gradient checkpointing, packing) on a tiny random-weight Llama."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from benchmarks.random_models import LLAMA_SHAPES, word_text, write_random_llama
from ptwiki_llm.config import load_config
from ptwiki_llm.training import preemption
from ptwiki_llm.training.metrics import METRICS_FILE, read_log
from ptwiki_llm.training.preemption import TrainingPreempted, checkpoints
from ptwiki_llm.training.trainer import run_training
from tests.training.conftest import REPO, write_formatted

pytestmark = pytest.mark.gpu

MODEL = "llama-tiny-random"


@pytest.fixture(scope="module")
def cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA GPU visible (torch {torch.__version__}, torch.cuda.is_available() is False)")
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed (pip install 'ptwiki-llm[gpu]'): QLoRA needs it")


def _setup(tmp: Path):
    write_random_llama(tmp / "models" / MODEL, "tiny", "cuda", "bfloat16")
    rng = random.Random(0)
    vocab = LLAMA_SHAPES["tiny"]["vocab_size"]
    formatted = write_formatted(tmp / "formatted", [word_text(rng, rng.randrange(20, 120), vocab) for _ in range(40)],
                                [word_text(rng, 50, vocab) for _ in range(2)])
    config = load_config(REPO / "configs" / "atena.yaml", {
        "workdir": str(tmp / "workdir"),
        "models": {"store": str(tmp / "models"), "base": {"name": MODEL, "path": None, "hub_id": None}},
        "train": {"max_steps": 2, "max_seq_length": 64, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
                  "warmup_steps": 0, "logging_steps": 1, "eval_steps": 1, "save_steps": 1000, "heldout_eval": True,
                  "max_eval_examples": 2, "dataloader_workers": 0},
    }, environ={})
    return config, formatted


def test_qlora_two_steps_stop_after_one_then_resume(cuda, tmp_path, monkeypatch):
    config, formatted = _setup(tmp_path)
    assert (config.train.quantization, config.train.optimizer) == ("nf4", "paged_adamw_32bit")
    on_step_end = preemption.PreemptionCallback.on_step_end

    def stop_after_first_step(self, args, state, control, **kwargs):
        if state.global_step == 1:  # what the SLURM signal handler's STOP request does, at a known step
            self.watcher.stop_file.touch()
        return on_step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(preemption.PreemptionCallback, "on_step_end", stop_after_first_step)
    with pytest.raises(TrainingPreempted) as stopped:
        run_training(config, formatted, None, show_progress=False)
    assert stopped.value.global_step == 1 and stopped.value.checkpoint
    run_dir = Path(stopped.value.checkpoint).parents[1]
    assert [step for step, _ in checkpoints(run_dir / "checkpoints")] == [1]

    monkeypatch.setattr(preemption.PreemptionCallback, "on_step_end", on_step_end)
    result = run_training(config, formatted, None, show_progress=False)
    metrics = result.metrics
    assert result.status == "completed" and result.device == "cuda"
    assert (result.dtype, result.mixed_precision) == ("bfloat16", "bf16")
    assert (metrics.resumed_from_step, metrics.global_step) == (1, 2)
    assert metrics.peak_memory_mb > 0 and metrics.tokens_this_session > 0
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    losses = [e["step"] for e in read_log(run_dir / METRICS_FILE) if "train.loss" in e]
    assert losses == [1, 2]  # the log continues across the resume
    heldout = result.heldout
    assert heldout.base.tokens == heldout.tuned.tokens > 0  # perplexity of the 4-bit model too
