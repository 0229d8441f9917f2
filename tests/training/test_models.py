"""Staging (GGUF -> HF folder once), offline loading with clear errors, and held-out scoring."""

from __future__ import annotations

import json
import math

import pytest

from ptwiki_llm.config import ModelRef
from ptwiki_llm.models.refs import ModelNotStagedError
from ptwiki_llm.models.runtime import load_causal_lm
from ptwiki_llm.models.staging import STAGE_MANIFEST, model_weights_dir, stage_manifest, stage_model
from ptwiki_llm.training.heldout import heldout_metrics
from tests.training.conftest import tiny_config


def test_gguf_is_converted_once_into_a_plain_safetensors_folder(model_store, tmp_path):
    config = tiny_config(tmp_path, model_store)
    folder = model_weights_dir(config)
    manifest = json.loads((folder / STAGE_MANIFEST).read_text())
    assert folder == model_store / "smollm2-135m-instruct"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())  # the GGUF marker is gone
    assert manifest["source"]["kind"] == "gguf" and len(manifest["weights_sha256"]) == 64
    assert stage_model(config) == folder
    assert stage_manifest(config.models.base, config)["staged_at"] == manifest["staged_at"]  # not converted again


def test_load_causal_lm_generates_from_local_files_only(model_store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_causal_lm(tiny_config(tmp_path, model_store))
    assert not model.training and str(model.device) == "cpu"
    assert model.config._attn_implementation == "sdpa"  # the default, on the CPU too
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    batch = tokenizer(["A capital de Portugal é", "Olá"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)


def test_unstaged_hub_model_names_models_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tiny_config(tmp_path, tmp_path / "empty-store")
    ref = ModelRef(name="llama-2-7b-hf", path="models/Llama-2-7b-hf", hub_id="meta-llama/Llama-2-7b-hf")
    with pytest.raises(ModelNotStagedError, match=r"ptwiki-llm models stage llama-2-7b-hf"):
        load_causal_lm(config, ref)
    with pytest.raises(ModelNotStagedError, match="HF_HUB_OFFLINE is set"):
        stage_model(config, ref)


def test_a_local_hf_folder_is_staged_by_links(model_store, tmp_path):
    config = tiny_config(tmp_path, tmp_path / "store")
    source = model_store / "smollm2-135m-instruct"
    ref = ModelRef(name="linked", path=str(source))
    folder = stage_model(config, ref)
    assert (folder / "model.safetensors").is_symlink()
    assert stage_manifest(ref, config)["weights_sha256"] == stage_manifest(
        ModelRef(name="smollm2-135m-instruct"), tiny_config(tmp_path, model_store))["weights_sha256"]


def test_heldout_scores_every_token_once_and_bits_per_byte_match(model_store, tmp_path):
    import torch

    model, tokenizer = load_causal_lm(tiny_config(tmp_path, model_store))
    text = "Lisboa é a capital de Portugal e fica junto ao rio Tejo."
    short = heldout_metrics(model, tokenizer, [text], max_length=8)  # several overlapping windows
    ids = [tokenizer.eos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert short["tokens"] == len(ids) - 1
    assert short["bytes"] == len(text.encode("utf-8"))
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    whole = heldout_metrics(model, tokenizer, [text], max_length=256)  # one window = the plain LM loss
    assert whole["loss"] == pytest.approx(full, rel=1e-4)
    assert whole["perplexity"] == pytest.approx(math.exp(full), rel=1e-4)
    assert whole["bits_per_byte"] == pytest.approx(full * whole["tokens"] / math.log(2) / whole["bytes"], rel=1e-6)
    assert short["loss"] > whole["loss"]  # less context per window, never fewer tokens
