"""benchmarks/gpu_train_throughput.py on CPU: arguments, the config it trains with, the tiny random model
through the train step's code, the throughput window, and the results file (end to end, slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_train_throughput as bench
from benchmarks.random_models import LLAMA_SHAPES
from ptwiki_llm.training.flops import UnknownGpuError, matmul_params

TINY = ["--shape", "tiny", "--device", "cpu", "--seq-len", "64", "--steps", "3", "--warmup-steps", "1"]


def test_defaults_run_every_variant_on_the_7b_shape():
    args = bench.parse_args([])
    assert args.shape == "7b" and args.device == "cuda" and args.variants == list(bench.VARIANTS)
    assert args.variants[:2] == ["qlora", "lora"]  # what matters most runs first under a time budget
    assert args.steps > args.warmup_steps >= 1 and args.config.name == "atena.yaml"


@pytest.mark.parametrize("argv", [
    ["--variants", "qlora,fast"],
    ["--steps", "2", "--warmup-steps", "2"],
    ["--warmup-steps", "0"],
    ["--batch-size", "-1"],
    ["--peak-tflops", "0"],
    ["--shape", "13b"],
])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.parse_args(argv)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_the_7b_config_is_the_presets_qlora_with_the_benchmarks_sizes(tmp_path):
    args = bench.parse_args(["--work", str(tmp_path)])
    config = bench.load_benchmark_config(args, bench.VARIANTS["qlora"][1])
    train = config.train
    assert (train.quantization, train.double_quantization, train.optimizer) == ("nf4", True, "paged_adamw_32bit")
    assert train.gradient_checkpointing and train.packing and train.lora.r == 16 and train.lora.alpha == 32
    assert (train.max_seq_length, train.per_device_batch_size, train.gradient_accumulation_steps) == (2048, 4, 1)
    assert (train.max_steps, train.logging_steps, train.heldout_eval, train.resume) == (8, 1, False, False)
    assert train.save_steps > train.max_steps and train.eval_steps > train.max_steps
    assert config.models.device == "cuda" and config.models.dtype == "bfloat16"
    assert config.models.base.name == "llama-2-7b-shape-random" and config.models.base.hub_id is None
    assert config.model_store == tmp_path / "models"


def test_each_variant_changes_one_thing(tmp_path):
    args = bench.parse_args(["--work", str(tmp_path), "--grad-accum", "0"])
    preset = bench.load_benchmark_config(args, bench.VARIANTS["qlora"][1])
    assert preset.train.gradient_accumulation_steps == 4  # 0 = the preset's
    train, models = preset.train.model_dump(), preset.models.model_dump()
    for name, (_, change) in bench.VARIANTS.items():
        config = bench.load_benchmark_config(args, change)
        differs = {k for k, v in config.train.model_dump().items() if v != train[k]}
        differs |= {f"models.{k}" for k, v in config.models.model_dump().items() if v != models[k]}
        assert len(differs) <= 2, (name, differs)  # bfd packing comes with padding_free: one option
        assert (name == "qlora") == (not differs), (name, differs)


def test_cpu_runs_lora_in_float32(tmp_path):
    config = bench.load_benchmark_config(bench.parse_args([*TINY, "--work", str(tmp_path)]), bench.VARIANTS["lora"][1])
    assert (config.models.device, config.models.dtype, config.train.quantization) == ("cpu", "float32", "none")
    assert config.train.optimizer == "adamw_torch" and config.train.max_seq_length == 64


def test_steady_throughput_leaves_out_the_warmup():
    log = [{"step": 1, "time": 100.0, "train.loss": 9.0, "train.tokens_seen": 1000.0},
           {"step": 1, "time": 100.5, "eval.loss": 9.0},
           {"step": 2, "time": 110.0, "train.loss": 8.0, "train.tokens_seen": 2000.0},
           {"step": 3, "time": 112.0, "train.loss": 7.0, "train.tokens_seen": 3000.0},
           {"step": 4, "time": 114.0, "train.loss": 6.0, "train.tokens_seen": 4000.0}]
    steady = bench.steady_throughput(log, warmup=2)
    assert steady["tokens"] == 2000 and steady["seconds"] == 4.0 and steady["tokens_per_s"] == 500
    assert steady["measured_steps"] == 2 and steady["step_time_s"] == 2.0 and steady["losses"] == [9, 8, 7, 6]
    with pytest.raises(ValueError, match="need step 4"):
        bench.steady_throughput(log, warmup=4)


def test_peak_from_the_table_or_the_option():
    gpu = {"name": "NVIDIA H200"}
    assert bench.resolve_peak(bench.parse_args([]), gpu)["tflops"] == 989.5
    assert bench.resolve_peak(bench.parse_args(["--peak-tflops", "500"]), {"name": "Tesla V100"}) == {
        "tflops": 500.0, "source": "--peak-tflops"}
    with pytest.raises(UnknownGpuError, match="--peak-tflops"):
        bench.resolve_peak(bench.parse_args([]), {"name": "Tesla V100"})
    assert bench.resolve_peak(bench.parse_args([]), None) is None  # CPU: no MFU


def test_score_adds_mfu_against_both_peaks():
    entry = {"status": "ok", "tokens_per_s": 3000.0}
    n = matmul_params(LLAMA_SHAPES["7b"])
    bench.score(entry, n, {"tflops": 989.5}, 790.0)
    assert entry["tokens_per_s_per_gpu"] == 3000.0
    assert entry["mfu"] == pytest.approx(3000 * 4 * n / 989.5e12)
    assert entry["mfu_of_measured_matmul"] == pytest.approx(3000 * 4 * n / 790e12)
    failed = {"status": "failed"}
    bench.score(failed, n, {"tflops": 989.5}, None)
    assert failed == {"status": "failed"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The jobs in this process: random tiny Llama + data, LoRA through run_training, the embedder."""
    work = tmp_path_factory.mktemp("bench")
    args = bench.parse_args([*TINY, "--work", str(work), "--embedder-passages", "24"])
    prepared = bench.prepare(args)
    return args, prepared, bench.train_variant(args, "lora"), bench.embedder_throughput(args)


def test_prepare_writes_a_staged_random_model_and_enough_text(tiny_run):
    args, prepared, _, _ = tiny_run
    folder = Path(prepared["model_dir"])
    assert (folder / "ptwiki_stage.json").is_file() and list(folder.glob("*.safetensors"))
    assert prepared["model_config"]["hidden_size"] == LLAMA_SHAPES["tiny"]["hidden_size"]
    assert prepared["text_tokens"] >= args.steps * 4 * 64 and prepared["texts"] >= args.steps * 4
    assert "matmul_tflops_measured" not in prepared  # CUDA only


def test_lora_steps_through_the_train_step(tiny_run):
    args, _, trained, _ = tiny_run
    assert trained["global_step"] == args.steps and trained["measured_steps"] == args.steps - args.warmup_steps
    assert len(trained["losses"]) == args.steps and all(loss > 0 for loss in trained["losses"])
    assert trained["tokens"] > 0 and trained["tokens_per_s"] > 0 and trained["peak_rss_gib"] > 0
    assert trained["dtype"] == "float32" and trained["train_config"]["quantization"] == "none"
    assert trained["train_config"]["max_seq_length"] == 64


def test_embedder_rate_and_labelled_projection(tiny_run):
    _, _, _, embedded = tiny_run
    assert embedded["passages"] == 24 and embedded["passages_per_s"] > 0 and embedded["device"] == "cpu"
    assert embedded["projected_hours_for_5m_passages"] == pytest.approx(5e6 / embedded["passages_per_s"] / 3600)
    assert embedded["projection_note"].startswith("computed, not measured")
    assert embedded["tokens_per_passage"] > 200  # heading + a full 200-token chunk + special tokens


@pytest.mark.slow
def test_results_file_end_to_end(tmp_path):
    """main(): prepare and one variant in child processes, a failing variant recorded, JSON + markdown."""
    out = tmp_path / "out"
    bench.main([*TINY, "--variants", "lora,qlora", "--embedder-passages", "0", "--work", str(tmp_path / "w"),
                "--out", str(out)])
    result = json.loads((out / "gpu_train_throughput_tiny.json").read_text())
    assert {"benchmark", "date_utc", "shape", "device", "gpu", "peak_bf16", "machine", "settings", "model",
            "prepare", "variants", "embedder", "anchors", "elapsed_s"} <= set(result)
    assert result["model"]["flops_per_token"] == 4 * result["model"]["n_matmul_params"]
    assert result["gpu"] is None and result["embedder"] is None
    lora, qlora = result["variants"]["lora"], result["variants"]["qlora"]
    assert lora["status"] == "ok" and lora["tokens_per_s_per_gpu"] > 0 and "mfu" not in lora
    assert qlora["status"] == "failed" and "needs a CUDA GPU" in qlora["error"]
    markdown = (out / "gpu_train_throughput_tiny.md").read_text()
    assert "| lora |" in markdown and "not a speed result" in markdown and "2,415" in markdown
