"""The same entry point under torchrun: 2 ranks on CPU (gloo DDP), launched by the train step."""

from __future__ import annotations

import json
from pathlib import Path

from ptwiki_llm.training.launch import train_adapter
from ptwiki_llm.training.metrics import METRICS_FILE, read_log
from tests.training.conftest import examples, tiny_config, write_formatted


# two ranks each load the model: ~17 s on 2 cores (~30 s with other work on the machine)
def test_two_ranks_on_gloo_train_one_adapter(model_store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = examples()
    formatted = write_formatted(tmp_path / "formatted", texts[:-4], texts[-4:])
    config = tiny_config(tmp_path / "wd", model_store, max_steps=2, num_processes=2)
    result = train_adapter(config, formatted, mlflow_run_id=None, show_progress=False)
    assert result.status == "completed" and result.world_size == 2
    assert result.metrics.global_step == 2
    run_dir = Path(result.run_dir)
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    losses = [e for e in read_log(run_dir / METRICS_FILE) if "train.loss" in e]
    assert [e["step"] for e in losses] == [1, 2]  # rank 0 alone writes the log
    # tokens of both ranks are counted: 2 ranks x 1 sequence x 32 tokens per step
    assert losses[-1]["train.tokens_seen"] == 2 * 2 * 32
    assert json.loads((run_dir / "result.json").read_text())["world_size"] == 2
