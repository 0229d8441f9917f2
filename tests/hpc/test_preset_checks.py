"""Presets that can run: the SLURM presets are checked when the config loads (ptwiki_llm/hpc/preset_checks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptwiki_llm.config import load_config
from ptwiki_llm.hpc.preset_checks import job_gpus, memory_bytes, problems

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", ["atena", "atena-13b", "atena-70b", "local-slurm"])
def test_every_slurm_preset_loads_and_its_train_job_has_a_gpu_per_rank(preset):
    config = load_config(REPO / "configs" / f"{preset}.yaml", environ={})
    assert problems(config) == []
    if config.models.device == "cuda":
        assert job_gpus(config.hpc.job_for("train")) == config.train.num_processes


@pytest.mark.parametrize(("preset", "override", "message"), [
    ("atena-13b", {"hpc": {"steps": {"train": {"gpus": 1}}}},
     "train.num_processes=4 ranks but the train job asks for 1 GPU(s): set hpc.steps.train.gpus: 4"),
    ("atena-13b", {"hpc": {"steps": {"train": {"gres": "gpu:a100:2"}}}}, "asks for 2 GPU(s)"),
    ("atena-70b", {"train": {"quantization": "nf4"}}, "FSDP over 4-bit weights is not supported"),
    ("atena-70b", {"hpc": {"steps": {"train": {"mem": "128G"}}}},
     "hpc.steps.train.mem=128G cannot hold 1 process(es) x 128 GiB of bfloat16 base: needs at least 128 GiB"),
    ("atena-70b", {"train": {"fsdp_config": {"cpu_ram_efficient_loading": False}}, "hpc": {"steps": {"train": {
        "mem": "512G"}}}}, "cannot hold 8 process(es) x 128 GiB"),
    ("atena-70b", {"hpc": {"steps": {"evaluate": {"gpus": 1}}}},
     "hpc.steps.evaluate: one GPU (80G) cannot hold the 128 GiB of base weights the evaluate process loads on it; "
     "set hpc.steps.evaluate.gpus: 3 (inference then loads the base across the job's GPUs"),
    ("atena-70b", {"hpc": {"steps": {"evaluate": {"gpus": 1}}}},
     "hpc.steps.evaluate.mem=64G cannot hold the base (128 GiB) it loads before moving it to the GPU"),
    ("atena-70b", {"hpc": {"steps": {"evaluate": {"gres": "gpu:h100:2"}}}},
     "2 GPUs (80G each) hold 64 GiB of base weights each, more than models.gpu_weights_share=0.7 of a GPU (56 GiB"),
    ("atena-70b", {"models": {"gpu_weights_share": 0.3}}, "set hpc.steps.evaluate.gpus: 6"),
    ("atena", {"hpc": {"steps": {"train": {"gpu_memory": "2G"}}}}, "hpc.steps.train: one GPU (2G) cannot hold"),
    ("atena", {"hpc": {"steps": {"format_examples": {"gpus": 0}}}},
     "data.knowledge.paraphrases=2: the format step generates them with the base on models.device=cuda, but its "
     "job asks for no GPU"),
    ("atena-70b", {"hpc": {"steps": {"format_examples": {"gpus": 1}}}},
     "hpc.steps.format_examples: one GPU (80G) cannot hold the 128 GiB of base weights"),
    ("atena-13b", {"hpc": {"steps": {"train": {"nodes": 2}}}}, "runs its ranks on one node"),
])
def test_a_preset_that_cannot_run_is_refused_at_load_with_what_to_set(preset, override, message):
    with pytest.raises(ValueError, match="cannot run as configured") as raised:
        load_config(REPO / "configs" / f"{preset}.yaml", override, environ={})
    assert message in " ".join(str(raised.value).split())


def test_the_70b_register_job_needs_no_memory_for_the_base_and_its_evaluate_job_shares_it_over_gpus():
    config = load_config(REPO / "configs" / "atena-70b.yaml", {"hpc": {"steps": {"register": {"mem": "8G"}}}},
                         environ={})
    assert problems(config) == []  # register reads no base weights: 8G is far below the 128 GiB base
    evaluate = config.hpc.job_for("evaluate")
    assert job_gpus(evaluate) == 4 and memory_bytes(evaluate.gpu_memory) == 80 << 30


def test_without_paraphrases_the_format_step_needs_no_gpu():
    config = load_config(REPO / "configs" / "atena.yaml", {"data": {"knowledge": {"paraphrases": 0}}, "hpc": {
        "steps": {"format_examples": {"gpus": 0}}}}, environ={})
    assert problems(config) == []


def test_local_presets_are_not_held_to_slurm_checks():
    config = load_config(REPO / "configs" / "local.yaml", {"train": {"num_processes": 2}}, environ={})
    assert config.train.num_processes == 2


@pytest.mark.parametrize(("value", "expected"), [("64G", 64 << 30), ("4096", 4096 << 20), ("1T", 1 << 40),
                                                 ("512M", 512 << 20)])
def test_memory_sizes_read_like_sbatch(value, expected):
    assert memory_bytes(value) == expected
