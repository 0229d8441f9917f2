from __future__ import annotations

import pytest

from ptwiki_llm import assets
from ptwiki_llm.assets import (
    AssetNotFoundError,
    default_data_source,
    find_staged,
    hub_download_planned,
    resolve_data_source,
)
from ptwiki_llm.config import load_config
from ptwiki_llm.models.refs import ModelNotStagedError, load_tokenizer, require_model_dir
from ptwiki_llm.models.staging import stage_model


def _config(tmp_path, **over):
    return load_config(overrides={"workdir": str(tmp_path / "wd"), **over}, environ={})


def test_asset_found_in_later_folder_of_the_path(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "data").mkdir(parents=True)
    (second / "data" / "x.jsonl").write_text("{}\n")
    first.mkdir()
    config = _config(tmp_path, asset_path=[str(first), str(second)], data={"source": "data/x.jsonl"})
    assert find_staged("data/x.jsonl", config) == second / "data" / "x.jsonl"
    assert resolve_data_source(config) == second / "data" / "x.jsonl"


def test_absolute_path_wins_without_asset_path(tmp_path):
    dump = tmp_path / "dump.xml"
    dump.write_text("<mediawiki/>")
    config = _config(tmp_path, data={"source": str(dump)})
    assert resolve_data_source(config) == dump


def test_offline_and_unstaged_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path)  # the default sample, not staged: the Hub could stand in, but is offline
    with pytest.raises(AssetNotFoundError, match="PTWIKI_ASSET_PATH") as err:
        resolve_data_source(config)
    assert "HF_HUB_OFFLINE" in str(err.value)


def test_hub_fallback_disabled_is_a_clear_error(tmp_path):
    config = _config(tmp_path, data={"hub_fallback": None})
    with pytest.raises(AssetNotFoundError, match="Hub fallback disabled"):
        resolve_data_source(config)


def test_previous_hub_download_is_reused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path)
    cached = tmp_path / "wd" / "assets" / "hub" / "wikimedia__wikipedia__20231101.pt__train__5000.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"id": "1", "title": "A", "text": "b", "url": "u"}\n')
    assert resolve_data_source(config) == cached


@pytest.mark.parametrize("source", ["/no/such/dump.xml.bz2", "data/mistyped.tar.gz", "./dump.xml"])
def test_a_named_source_that_is_missing_is_an_error_and_never_a_download(tmp_path, monkeypatch, source):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(assets, "download_hub_dataset", _no_download)
    config = _config(tmp_path, data={"source": source}, allow_hub_download=True)
    with pytest.raises(AssetNotFoundError, match="nothing is downloaded") as err:
        resolve_data_source(config)
    assert source.lstrip("./") in str(err.value)
    assert not hub_download_planned(config)


def test_only_the_default_sample_falls_back_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(assets, "download_hub_dataset", lambda config, fallback: calls.append(fallback) or tmp_path)
    config = _config(tmp_path, allow_hub_download=True)
    assert config.data.source == default_data_source() and hub_download_planned(config)
    assert resolve_data_source(config) == tmp_path and len(calls) == 1


def test_an_explicit_model_path_that_is_missing_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    config = _config(tmp_path, allow_hub_download=True, models={"base": {
        "name": "mine", "path": str(tmp_path / "no-model"), "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}})
    with pytest.raises(ModelNotStagedError, match="no-model' does not exist"):
        load_tokenizer(config.models.base, config)
    with pytest.raises(ModelNotStagedError, match="no-model' does not exist"):
        stage_model(config, config.models.base)


def _no_download(config, fallback):
    raise AssertionError("a named source must never start a download")


def test_unstaged_model_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path)
    with pytest.raises(ModelNotStagedError, match="PTWIKI_ASSET_PATH"):
        require_model_dir(config.models.base, config)
    with pytest.raises(ModelNotStagedError):
        load_tokenizer(config.models.base, config)


def test_staged_tokenizer_loads_offline(tmp_path, monkeypatch, asset_folders, asset):
    asset("models/smollm2-135m-instruct-gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path, asset_path=[str(p) for p in asset_folders])
    tokenizer = load_tokenizer(config.models.base, config)
    assert len(tokenizer("Berlim é a capital da Alemanha.")["input_ids"]) > 3
