"""The hpc config section, how it becomes ZenML settings and component config, service URL files,
image digests and the failure report (no SLURM needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ptwiki_llm.config import load_config
from ptwiki_llm.hpc import services
from ptwiki_llm.hpc.images import image_digest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def slurm_config(clean_env, tmp_path):
    clean_env.delenv("MLFLOW_TRACKING_URI", raising=False)
    return load_config(REPO / "configs" / "local-slurm.yaml", {"workdir": str(tmp_path / "w")})


def test_step_overrides_layer_on_the_defaults(slurm_config):
    hpc = slurm_config.hpc
    assert hpc.orchestrator == "slurm"
    assert hpc.job_for("validate").mem == "3G" and hpc.job_for("validate").partition == "debug"
    train = hpc.job_for("train")
    assert (train.mem, train.cpus_per_task, train.requeue, train.signal_seconds) == ("8G", 1, True, 120)
    assert train.partition == "debug"  # not overridden: inherited


def test_a_bad_step_override_names_the_step(clean_env):
    with pytest.raises(ValueError, match=r"hpc\.steps\.train"):
        load_config(None, {"hpc": {"steps": {"train": {"gpu": 2}}}})


def test_atena_preset_is_all_configuration(clean_env, monkeypatch):
    monkeypatch.setenv("USER", "someone")
    config = load_config(REPO / "configs" / "atena.yaml")
    hpc = config.hpc
    assert hpc.orchestrator == "slurm" and hpc.require_server_store
    assert hpc.services.mlflow and hpc.services.zenml and hpc.services.weaviate
    train = hpc.job_for("train")
    assert train.gpus > 0 and train.requeue and train.image and train.image.endswith(".sif")


def test_pipeline_options_carry_job_settings_binds_and_requeue_retries(slurm_config):
    from ptwiki_llm.hpc.stack import pipeline_options

    options = pipeline_options(slurm_config, ["ingest", "validate", "format_examples", "train"])
    default = options["settings"]["orchestrator"]
    assert default.mem == "3G" and default.partition == "debug"
    assert slurm_config.workdir in default.binds
    steps = options["steps"]
    assert set(steps) == {"ingest", "train"}  # only steps with overrides
    assert steps["ingest"]["settings"]["orchestrator"].mem == "4G"
    assert steps["train"]["retry"] == {"max_retries": 2}
    assert steps["train"]["settings"]["orchestrator"].job() == slurm_config.hpc.job_for("train").model_copy(
        update={"binds": default.binds})
    assert "train" not in pipeline_options(slurm_config, ["ingest"]).get("steps", {})


def test_orchestrator_component_config_round_trips(slurm_config):
    from ptwiki_llm.hpc.flavor import SlurmOrchestratorConfig
    from ptwiki_llm.hpc.stack import orchestrator_configuration

    values = orchestrator_configuration(slurm_config)
    assert values["jobs_dir"] == str(Path(slurm_config.workdir) / "slurm")
    assert "host_python" not in values  # None: left to the default
    component = SlurmOrchestratorConfig(**values)
    assert component.is_synchronous and component.handles_step_retries
    assert component.job() == slurm_config.hpc.slurm


def test_failure_report_names_job_exit_code_log_and_cancelled_dependents():
    from ptwiki_llm.hpc.orchestrator import JobFailure, failure_report

    report = failure_report(
        [JobFailure("validate", "12", "FAILED", 1, 0, "NonZeroExitCode", "/j/validate.log", "Traceback\nBoom")],
        {"format_examples": "13"},
    )
    assert report == (
        "step `validate` failed: SLURM job 12 FAILED, exit code 1, reason NonZeroExitCode\n"
        "  log /j/validate.log ends with:\n    Traceback\n    Boom\n"
        "cancelled because of the failure: `format_examples` (job 13)"
    )
    killed = failure_report([JobFailure("train", "7", "TIMEOUT", 0, 15, "TimeLimit", "/j/t.log", "")], {})
    assert killed == "step `train` failed: SLURM job 7 TIMEOUT, exit code 0 (signal 15), reason TimeLimit\n" \
                     "  log /j/t.log (empty or missing)"


def test_service_url_files(slurm_config, monkeypatch):
    monkeypatch.setenv("WEAVIATE_URL", "recorded so teardown removes what apply_services sets")
    monkeypatch.delenv("WEAVIATE_URL")
    config = slurm_config.model_copy(update={"hpc": slurm_config.hpc.model_copy(update={
        "services": slurm_config.hpc.services.model_copy(update={"mlflow": True, "weaviate": True})})})
    with pytest.raises(services.ServiceNotRunning, match="start the server first"):
        services.apply_services(config)
    folder = services.services_dir(config)
    folder.mkdir(parents=True)
    (folder / "mlflow.url").write_text("http://node7:5000\n")
    (folder / "weaviate.url").write_text("http://node8:8080\n")
    applied = services.apply_services(config)
    assert applied.mlflow_tracking_uri == "http://node7:5000"
    import os

    assert os.environ["WEAVIATE_URL"] == "http://node8:8080"
    (folder / "mlflow.url").write_text("node7:5000")
    with pytest.raises(services.ServiceNotRunning, match="not an http"):
        services.read_url(config, "mlflow")


def test_image_digest_is_cached_beside_the_image(tmp_path):
    image = tmp_path / "p.sif"
    image.write_bytes(b"not really an image")
    digest = image_digest(image)
    assert digest == "sha256:" + hashlib.sha256(b"not really an image").hexdigest()
    assert (tmp_path / "p.sif.sha256").read_text().split()[0] == digest.removeprefix("sha256:")
    with pytest.raises(FileNotFoundError, match=r"hpc\.slurm\.image"):
        image_digest(tmp_path / "missing.sif")


def test_local_slurm_preset_is_the_local_preset_plus_hpc(clean_env):
    local = load_config(REPO / "configs" / "local.yaml").to_dict()
    slurm = load_config(REPO / "configs" / "local-slurm.yaml").to_dict()
    for key in ("preset", "workdir", "hpc"):
        local.pop(key)
        slurm.pop(key)
    assert slurm == local, "configs/local-slurm.yaml drifted from configs/local.yaml"
