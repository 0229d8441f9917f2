from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ptwiki_llm.config import Config, env_overrides, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_resolve_workdir_and_derived_paths(clean_env, tmp_path):
    config = load_config(overrides={"workdir": str(tmp_path / "wd")}, environ={})
    assert config.workdir == str(tmp_path / "wd")
    assert config.model_store == tmp_path / "wd" / "models"
    assert config.zenml_config_path == tmp_path / "wd" / "zenml"
    assert config.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'wd' / 'mlflow' / 'mlflow.db'}"


@pytest.mark.parametrize("preset", ["local.yaml", "atena.yaml"])
def test_presets_validate(clean_env, preset):
    config = load_config(REPO / "configs" / preset, environ={"USER": "me"})
    assert config.preset == preset.removesuffix(".yaml")


def test_atena_preset_names_llama2_and_full_dump(clean_env):
    config = load_config(REPO / "configs" / "atena.yaml", environ={})
    assert config.models.base.hub_id == "meta-llama/Llama-2-7b-hf"
    assert config.data.hub_fallback is None and config.allow_hub_download is False


def test_environment_overrides_nested_keys_and_asset_path(tmp_path):
    environ = {
        "PTWIKI_WORKDIR": str(tmp_path),
        "PTWIKI_DATA__INGEST__WORKERS": "3",
        "PTWIKI_DATA__FORMAT__MODE": "completion",
        "PTWIKI_ASSET_PATH": f"{tmp_path}/a:{tmp_path}/b",
        "PTWIKI_NOT_A_KEY": "ignored",
    }
    config = load_config(REPO / "configs" / "local.yaml", environ=environ)
    assert config.workdir == str(tmp_path)
    assert config.data.ingest.workers == 3
    assert config.data.format.mode == "completion"
    assert config.asset_path == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_environment_wins_over_file_and_overrides(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("data:\n  max_articles: 10\n")
    config = load_config(preset, {"data": {"max_articles": 20}}, environ={"PTWIKI_DATA__MAX_ARTICLES": "30"})
    assert config.data.max_articles == 30


def test_workdir_template_and_env_vars_expand(tmp_path, monkeypatch):
    monkeypatch.setenv("PTWIKI_TEST_BASE", str(tmp_path))
    config = load_config(
        overrides={"workdir": "$PTWIKI_TEST_BASE/run", "models": {"store": "{workdir}/m"}}, environ={}
    )
    assert config.workdir == str(tmp_path / "run")
    assert config.model_store == tmp_path / "run" / "m"


def test_unknown_key_and_bad_value_are_clear_errors():
    with pytest.raises(ValidationError, match="tokenizers"):
        Config.model_validate({"data": {"format": {"tokenizers": "x"}}})
    with pytest.raises(ValidationError, match="mode"):
        Config.model_validate({"data": {"format": {"mode": "chat"}}})


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_digest_is_stable_and_sensitive(tmp_path):
    a = load_config(overrides={"workdir": str(tmp_path)}, environ={})
    b = load_config(overrides={"workdir": str(tmp_path)}, environ={})
    c = load_config(overrides={"workdir": str(tmp_path), "seed": 7}, environ={})
    assert a.digest() == b.digest() != c.digest()


def test_env_overrides_parse_yaml_scalars():
    tree = env_overrides({"PTWIKI_ZENML__ENABLE_CACHE": "false", "PTWIKI_DATA__MAX_ARTICLES": "12"})
    assert tree == {"zenml": {"enable_cache": False}, "data": {"max_articles": 12}}
