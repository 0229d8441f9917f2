"""The data steps of configs/local-slurm.yaml as SLURM jobs inside the pipeline image (hpc.container_runtime:
podman), against the same steps as jobs on the host: the same files, byte for byte (less the run times and run
ids in ingest's manifest and Great Expectations' results); the image's content id and lock hash recorded in
MLflow; the job ran it without a network and by id."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import inspect, lock_sha256, pipeline_image, run_args

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "local-slurm.yaml"
STEPS = ("ingest", "validate", "format_examples")


def _data_run(workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES="40", HF_HUB_OFFLINE="1",
                   COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", "data", "--config", str(CONFIG)], cwd=REPO,
                          env=environ, capture_output=True, text=True, timeout=900)


# What differs between any two runs: when ingest ran and how fast (ptwiki_llm/data/ingest.py's manifest), and
# the ids and times Great Expectations gives each validation run (validation.json; its HTML data docs, stamped
# with the run time in their path and text, are compared by name only)
RUN_TIMES = ("created_at", "elapsed_s", "articles_per_s", "input_mb_per_s")
GX_RUN_IDENTITY = {"id", "validation_id", "checkpoint_id", "ge_load_time", "run_time", "validation_time"}


def _without_gx_run_identity(value):
    if isinstance(value, dict):
        return {k: _without_gx_run_identity(v) for k, v in value.items() if k not in GX_RUN_IDENTITY}
    if isinstance(value, list):
        return [_without_gx_run_identity(v) for v in value]
    return value


def _outputs(workdir: Path) -> dict[str, bytes]:
    """Every file the data steps wrote, by path under the workdir's data folder, less what differs between runs."""
    root = workdir / "data"
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name, content = str(path.relative_to(root)), path.read_bytes()
        if path.name == "manifest.json" and path.parent.parent.name == "articles":
            manifest = json.loads(content)
            assert all(key in manifest for key in RUN_TIMES)
            content = json.dumps({k: v for k, v in manifest.items() if k not in RUN_TIMES}, sort_keys=True).encode()
        elif path.name == "validation.json":
            content = json.dumps(_without_gx_run_identity(json.loads(content)), sort_keys=True).encode()
        elif "data_docs" in path.parts:
            name, content = re.sub(r"/\d{8}T\d{6}\.\d+Z/", "/<run time>/", name), b""
        files[name] = content
    return files


def _jobs(workdir: Path) -> dict[str, dict]:
    (manifest,) = (workdir / "slurm").glob("*/jobs.json")
    return {job["step"]: job for job in json.loads(manifest.read_text())["jobs"]}


def _step_runs(workdir: Path) -> dict[str, dict[str, str]]:
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.config import load_config

    config = load_config(CONFIG, {"workdir": str(workdir)}, environ={})
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id])
    return {r.data.tags["ptwiki.step"]: r.data.tags for r in runs if "ptwiki.step" in r.data.tags}


def test_data_steps_in_the_pipeline_image_write_what_the_host_jobs_write(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    ref = pipeline_image()
    digest = "sha256:" + inspect(ref, "{{.Id}}").removeprefix("sha256:")
    podman = {}  # this machine's podman options, as for containers/build.sh; else the preset's
    if os.environ.get("PODMAN_RUNTIME"):
        podman["PTWIKI_HPC__PODMAN__GLOBAL_ARGS"] = json.dumps(["--runtime", os.environ["PODMAN_RUNTIME"]])
    if run_args():
        podman["PTWIKI_HPC__PODMAN__EXTRA_ARGS"] = json.dumps(run_args())

    # both runs in the same folder (files that name their own path must match too), the host's moved away after
    workdir = tmp_path / "run"
    host = _data_run(workdir)
    assert host.returncode == 0, host.stdout[-4000:] + host.stderr[-4000:]
    host_files = _outputs(workdir)
    host_scripts = [p.read_text() for p in (workdir / "slurm").glob("*/*.sbatch")]
    workdir.rename(tmp_path / "host")
    image = _data_run(workdir, PTWIKI_HPC__CONTAINER_RUNTIME="podman", PTWIKI_HPC__SLURM__IMAGE=ref, **podman)
    assert image.returncode == 0, image.stdout[-4000:] + image.stderr[-4000:]

    # the steps ran as jobs, inside the image, by its id, without a network
    jobs = _jobs(workdir)
    assert list(jobs) == list(STEPS)
    for job in jobs.values():
        script = Path(job["script"]).read_text()
        assert " run --rm --init --network=none " in script
        assert f" --entrypoint python {digest.removeprefix('sha256:')} -m zenml.entrypoints.entrypoint " in script
        assert f"step {job['step']}: exit code 0" in Path(job["log"]).read_text()
    assert len(host_scripts) == 3 and not any("podman" in script for script in host_scripts)

    # the same files, byte for byte
    image_files = _outputs(workdir)
    assert sorted(image_files) == sorted(host_files)
    assert len(host_files) >= 6
    different = [name for name in host_files if host_files[name] != image_files[name]]
    assert different == [], f"differ between the host and the image: {different}"

    # MLflow knows which image each step ran in
    runs = _step_runs(workdir)
    assert sorted(runs) == ["format", "ingest", "validate"]
    for tags in runs.values():
        assert tags["ptwiki.container_runtime"] == "podman"
        assert tags["ptwiki.container_image"] == ref
        assert tags["ptwiki.container_digest"] == digest
        assert tags["ptwiki.container_lock_sha256"] == lock_sha256()
    assert all(tags.get("ptwiki.container_digest", "") == "" for tags in _step_runs(tmp_path / "host").values())
