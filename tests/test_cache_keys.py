"""Cache keys hold what a step's output depends on: no service URLs, the registry state where it matters."""

from __future__ import annotations

import pytest

from ptwiki_llm.cache_keys import EXTERNAL_STATE, export_locations, registry_state
from ptwiki_llm.config import load_config
from ptwiki_llm.config_slice import STAGE_SECTIONS, config_for_stage, config_from_stage


def _config(tmp_path, **over):
    return load_config(None, {"workdir": str(tmp_path), **over}, environ={})


@pytest.mark.parametrize("stage", sorted(STAGE_SECTIONS))
def test_service_urls_and_the_zenml_section_are_not_in_any_stage_config(tmp_path, stage):
    here = _config(tmp_path, mlflow={"tracking_uri": "http://node1:5000"},
                   rag={"store": {"weaviate": {"url": "http://node1:8080"}}})
    there = _config(tmp_path, mlflow={"tracking_uri": "http://node7:5123"},
                    rag={"store": {"weaviate": {"url": "http://node7:8099"}}},
                    zenml={"execution_mode": "fail_fast", "enable_cache": False})
    assert config_for_stage(here, stage) == config_for_stage(there, stage)
    assert "node1" not in str(config_for_stage(here, stage))


def test_a_step_gets_the_urls_back_from_the_environment(tmp_path, monkeypatch):
    config = _config(tmp_path, mlflow={"tracking_uri": "http://node1:5000"},
                     rag={"store": {"weaviate": {"url": "http://node1:8080"}}})
    monkeypatch.delenv("WEAVIATE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    export_locations(config)
    part = config_for_stage(config, "index")
    part[EXTERNAL_STATE] = {"registry_created": None}
    received = repr(part)
    restored = config_from_stage(part)
    assert repr(part) == received  # the step's parameter (ZenML's) is left as it came
    assert restored.mlflow_tracking_uri == "http://node1:5000"
    from ptwiki_llm.rag.stores.weaviate_store import weaviate_url

    assert weaviate_url(restored.rag.store.weaviate) == "http://node1:8080"


def test_registry_state_changes_with_a_reset_registry_and_with_aliases(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config(tmp_path)
    assert registry_state(config) == {"created": None, "aliases": {}}
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.create_registered_model(config.registry.model_name)
    run = client.create_run(client.get_experiment_by_name(config.mlflow.experiment).experiment_id)
    client.create_model_version(config.registry.model_name, f"runs:/{run.info.run_id}/m", run.info.run_id)
    first = registry_state(config)
    assert first["created"] is not None and first["aliases"] == {}
    client.set_registered_model_alias(config.registry.model_name, "champion", "1")
    assert registry_state(config) == {"created": first["created"], "aliases": {"champion": "1"}}


def test_index_keeps_its_key_while_the_store_is_as_it_left_it_and_not_after_a_wipe(tmp_path):
    import shutil

    import lancedb
    import pyarrow as pa

    from ptwiki_llm.cache_keys import index_cache_state, record_index_state

    config = _config(tmp_path)
    first = index_cache_state(config)
    folder = config.expand(config.rag.store.lancedb_uri)
    folder.mkdir(parents=True)
    lancedb.connect(str(folder)).create_table("Ptwiki_abc", pa.table({"id": ["a", "b"]}))  # what index wrote
    record_index_state(config, first)
    # the next run: served from the cache. ZenML hashes str(parameter), so the key must print alike too
    assert str(index_cache_state(config)) == str(first)
    shutil.rmtree(folder)  # the store wiped (or another server): the cached output is stale
    wiped = index_cache_state(config)
    assert wiped != first and wiped["found"] == first["found"] == {"backend": "lancedb", "collections": {}}


def test_register_and_evaluate_keep_their_key_after_their_own_alias_moves_only(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.cache_keys import record_registry_state, registry_cache_state

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config(tmp_path)
    first = registry_cache_state(config)  # a fresh workdir: no registry yet
    client = MlflowClient()  # what the run's register and evaluate do: a version, challenger, then champion
    client.create_registered_model(config.registry.model_name)
    run = client.create_run(client.get_experiment_by_name(config.mlflow.experiment).experiment_id)
    client.create_model_version(config.registry.model_name, f"runs:/{run.info.run_id}/m", run.info.run_id)
    client.set_registered_model_alias(config.registry.model_name, "challenger", "1")
    client.set_registered_model_alias(config.registry.model_name, "champion", "1")
    record_registry_state(config, first)
    # the unchanged re-run: served from the cache (ZenML hashes str(parameter): it must print alike, key order too)
    assert str(registry_cache_state(config)) == str(first)
    client.delete_registered_model_alias(config.registry.model_name, "champion")  # moved by hand
    moved = registry_cache_state(config)
    assert moved != first and moved["aliases"] == {"challenger": "1"}
    client.set_registered_model_alias(config.registry.model_name, "champion", "1")
    assert registry_cache_state(config) == first  # back as the run left it
    client.delete_registered_model(config.registry.model_name)  # a reset registry looks like the first run's
    reset = registry_cache_state(config)
    assert reset != first and (reset["created"], reset["aliases"]) == (first["created"], first["aliases"])
