"""train_stage -> register_stage -> promote -> load_for_inference on a real MLflow store and the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptwiki_llm import registry
from ptwiki_llm.config import ModelRef
from ptwiki_llm.stages import register_stage, train_stage
from tests.conftest import stage_slice
from tests.training.conftest import examples, tiny_config, write_formatted


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workdir")


@pytest.fixture(scope="module")
def config(workdir, model_store):
    return tiny_config(workdir, model_store, max_steps=3, eval_steps=3, heldout_eval=True, max_seq_length=64,
                       per_device_batch_size=2)


@pytest.fixture(scope="module")
def trained(config, workdir):
    texts = examples()
    formatted = write_formatted(workdir / "formatted", texts[:-4], texts[-4:])
    return train_stage(stage_slice(config, "train"), formatted, pipeline_run_id="pipeline-1", show_progress=False)


@pytest.fixture(scope="module")
def registered(config, trained):
    return register_stage(stage_slice(config, "register"), trained, pipeline_run_id="pipeline-1")


def _client(config):
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking

    tracking.setup(config)
    return MlflowClient()


def test_train_stage_result(trained, config):
    assert trained.status == "completed" and trained.metrics.global_step == 3
    adapter = Path(trained.adapter_dir)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "model.safetensors").exists()
    assert trained.base.name == config.models.base.name and len(trained.base.weights_sha256) == 64
    base, tuned = trained.heldout.base, trained.heldout.tuned
    assert base.tokens == tuned.tokens > 0
    assert tuned.perplexity != base.perplexity  # the adapter changed the model
    assert trained.metrics.tokens_per_s > 0 and trained.metrics.peak_memory_mb > 100


def test_mlflow_has_curves_settings_and_hardware(trained, config):
    client = _client(config)
    run = client.get_run(trained.mlflow_run_id)
    assert run.data.tags["ptwiki.step"] == "train" and "mlflow.parentRunId" in run.data.tags
    history = client.get_metric_history(run.info.run_id, "train.loss")
    assert [m.step for m in history] == [1, 2, 3]
    for key in ("eval.loss", "eval.perplexity", "train.tokens_per_s", "train.step_time_s", "train.peak_memory_mb",
                "heldout.base.perplexity", "heldout.tuned.bits_per_byte"):
        assert key in run.data.metrics, key
    params = run.data.params
    assert json.loads(params["lora.config"])["r"] == config.train.lora.r
    assert params["quantization.config"] == "none" and params["train.device"] == "cpu"
    assert run.data.tags["hardware.cores"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts
    setup = {a.path for a in client.list_artifacts(run.info.run_id, "train")}
    assert {"train/setup.json", "train/metrics.jsonl", "train/result.json"} <= setup


def test_register_logs_only_the_adapter_with_lineage(registered, trained, config):
    assert registered.version == "1" and registered.alias == "challenger"
    files = registered.artifacts
    assert "peft/adapter_model.safetensors" in files and "components/tokenizer/tokenizer.json" in files
    assert not [f for f in files if f.endswith(("model.safetensors", ".bin")) and not f.startswith("peft/")]
    client = _client(config)
    version = client.get_model_version_by_alias(config.registry.model_name, "challenger")
    tags = version.tags
    assert tags["ptwiki.dataset_sha256"] == trained.dataset_sha256
    assert tags["ptwiki.train_sha256"] == trained.train_sha256
    assert tags["ptwiki.train_config_sha256"] == trained.config_sha256
    assert tags["ptwiki.base.weights_sha256"] == trained.base.weights_sha256
    assert tags["ptwiki.base.hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "ptwiki.git_commit" in tags and tags["ptwiki.train_run_id"] == trained.mlflow_run_id
    requirements = Path(registry.download_adapter(config, version) / "requirements.txt").read_text()
    assert "peft==" in requirements and "torchvision" not in requirements


def test_load_for_inference_generates_offline(registered, config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from peft import PeftModel

    from ptwiki_llm.models.runtime import load_causal_lm

    model, tokenizer = registry.load_for_inference(config, "challenger")
    assert not model.training and not any("lora" in name for name, _ in model.named_parameters())
    batch = tokenizer(["### Instrução:\nExplique o que é Lisboa.\n\n### Resposta:\n"], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 4
    # the merged weights compute what the base computes through the adapter layers, and differ from the base's
    same, _ = registry.load_for_inference(config, registered.version)
    base, _ = load_causal_lm(config)
    with torch.inference_mode():
        merged_logits, same_logits, base_logits = (m(**batch).logits for m in (model, same, base))
        folder = registry.download_adapter(config, registry.resolve_version(config, registered.version))
        adapter_logits = PeftModel.from_pretrained(base, str(folder / "peft"))(**batch).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4) and torch.equal(merged_logits, same_logits)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-4)


def test_promotion_moves_champion_and_records_why(registered, trained, config):
    first = registry.promote(config, "challenger", "lower held-out perplexity than the base")
    assert first == {**first, "version": "1", "previous": ""}
    second_version = register_stage(config, trained).version  # the same adapter again, as version 2
    record = registry.promote(config, second_version, "re-registered")
    assert record["previous"] == "1"
    shown = registry.show_version(config, "champion")
    assert shown["version"] == second_version and "challenger" in shown["aliases"]
    assert shown["tags"]["ptwiki.promotion.reason"] == "re-registered"
    assert shown["tags"]["ptwiki.promotion.previous_champion"] == "1"
    with pytest.raises(registry.RegistryError, match="needs a reason"):
        registry.promote(config, "1", " ")
    with pytest.raises(registry.RegistryError, match="no version '99'"):
        registry.promote(config, "99", "x")


def test_models_cli_list_show_promote(registered, config, workdir, model_store):
    from ptwiki_llm.cli import app

    sets = ["--set", f"workdir={workdir}", "--set", f"models.store={model_store}"]
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--json", *sets])
    assert listed.exit_code == 0, listed.output
    assert "challenger" in listed.output
    promoted = runner.invoke(app, ["models", "promote", "1", "--reason", "rollback", *sets])
    assert promoted.exit_code == 0, promoted.output
    shown = runner.invoke(app, ["models", "show", "champion", *sets])
    assert shown.exit_code == 0 and '"rollback"' in shown.output
    missing = runner.invoke(app, ["models", "show", "42", *sets])
    assert missing.exit_code == 2 and "no version '42'" in missing.output


def test_adapter_for_another_base_is_refused(registered, config):
    other = config.model_copy(deep=True)
    other.models.base = ModelRef(name="llama-2-7b-hf", path="models/Llama-2-7b-hf", hub_id="meta-llama/Llama-2-7b-hf")
    with pytest.raises(registry.BaseModelMismatchError, match="trained on base model 'smollm2-135m-instruct'"):
        registry.load_for_inference(other, "challenger")


def test_adapter_for_other_weights_of_the_same_name_is_refused(trained, config):
    altered = trained.model_copy(update={"base": trained.base.model_copy(update={"weights_sha256": "0" * 64})})
    with pytest.raises(registry.BaseModelMismatchError, match="re-stage the original weights"):
        registry.register_adapter(config, altered)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a CPU-only node")
def test_register_runs_on_a_cpu_node_for_a_gpu_preset(trained, config):
    """The register step is a CPU job on the cluster: it must not need the GPU the training used."""
    gpu_preset = config.model_copy(deep=True)
    gpu_preset.models.device = "cuda"
    assert int(register_stage(gpu_preset, trained).version) >= 2


def test_register_reads_no_base_weights(trained, config, model_store, tmp_path):
    """Registering a 70B adapter must not need the base in memory: with the base's weight files gone from the
    model store (config.json, tokenizer and stage manifest kept), the adapter still registers, its files as trained."""
    from ptwiki_llm.models.staging import model_weights_dir

    staged = model_weights_dir(config)
    store = tmp_path / "store"
    (store / staged.name).mkdir(parents=True)
    for file in staged.iterdir():
        if file.suffix not in (".safetensors", ".bin", ".gguf"):
            (store / staged.name / file.name).symlink_to(file)
    without_weights = config.model_copy(deep=True)
    without_weights.models.store = str(store)
    registered = register_stage(without_weights, trained)
    logged = registry.download_adapter(config, registry.resolve_version(config, registered.version)) / "peft"
    trained_file = Path(trained.adapter_dir) / "adapter_model.safetensors"
    assert (logged / "adapter_model.safetensors").read_bytes() == trained_file.read_bytes()
    assert "peft/adapter_config.json" in registered.artifacts and registered.base_model_path == str(store / staged.name)
    import yaml

    mlmodel = yaml.safe_load((logged.parent / "MLmodel").read_text())  # names the base by reference and hash
    assert mlmodel["metadata"]["base"]["weights_sha256"] == trained.base.weights_sha256
    assert mlmodel["flavors"]["transformers"]["local_base_model_path"] == str(store / staged.name)
