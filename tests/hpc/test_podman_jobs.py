"""Steps inside OCI images with podman: the job script's ``podman run`` line exactly, what reaches the step
(run for real with bash and a fake podman that prints what it was given), the image's content id, and the
config switch (no SLURM and no podman needed; tests/hpc/test_slurm_images.py runs the real thing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ptwiki_llm.config import SlurmJobConfig, load_config
from ptwiki_llm.hpc.jobscript import ImageLaunch, JobSpec, render_job_script, write_env_file
from ptwiki_llm.hpc.podman import PodmanImageError, image_id, job_network, mount_specs, podman_command

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = ("-m", "zenml.entrypoints.entrypoint", "--step_name", "ingest")
IMAGE_ID = "3f" * 32


def _spec(tmp: Path, launch: ImageLaunch, job: SlurmJobConfig | None = None) -> JobSpec:
    return JobSpec(step="ingest", name="ptwiki-ingest-run-1", run_id="run-1", job=job or SlurmJobConfig(),
                   command=("python", *ENTRYPOINT), workdir=str(tmp), script_path=tmp / "ingest.sbatch",
                   log_path=tmp / "ingest.log", env_path=tmp / "ingest.env", image=launch)


def _launch(**kwargs) -> ImageLaunch:
    values = dict(image=IMAGE_ID, executable="podman", runtime="podman", global_args=("--runtime", "runc"),
                  binds=("/repo:/app", "/scratch/me/ptwiki", "/shared/models"), network="none",
                  env_names=("MLFLOW_TRACKING_PASSWORD", "PTWIKI_SOURCE_ROOT"))
    values.update(kwargs)
    return ImageLaunch(**values)


def test_podman_job_runs_the_entrypoint_in_the_image_by_id_with_mounts_and_no_network(tmp_path):
    script = render_job_script(_spec(tmp_path, _launch())).splitlines()
    expected = (
        "    ( trap '' USR1 INT QUIT; exec podman --runtime runc run --rm --init --network=none "
        "--env MLFLOW_TRACKING_PASSWORD --env OMP_NUM_THREADS --env PTWIKI_SOURCE_ROOT --env ZENML_CONFIG_PATH "
        "--env 'SLURM_*' --env CUDA_VISIBLE_DEVICES --env GPU_DEVICE_ORDINAL --env ROCR_VISIBLE_DEVICES "
        "-v /repo:/app -v /scratch/me/ptwiki:/scratch/me/ptwiki -v /shared/models:/shared/models -w /app "
        f"--entrypoint python {IMAGE_ID} " + " ".join(ENTRYPOINT) + " ) &"
    )
    assert expected in script
    # the variables reach podman by name from this shell; the env file is removed at the end, as for host jobs
    assert f"source {tmp_path}/ingest.env" in script and f"rm -f {tmp_path}/ingest.env" in script
    assert 'export ZENML_CONFIG_PATH="/tmp/ptwiki-zenml-${SLURM_JOB_ID:-$$}"' in script
    assert not any("APPTAINERENV_" in line for line in script)


def test_gpus_host_network_env_host_and_extra_args():
    argv = podman_command("img", ["python", "-V"], ["B", "A", "B"], ["/r:/app:ro"], network="host", gpus=True,
                          cleanenv=False, extra_args=["--ulimit", "nofile=4096:4096"])
    assert argv == [
        "podman", "run", "--rm", "--init", "--network=host", "--env-host",
        "--env", "A", "--env", "B", "--env", "SLURM_*", "--env", "CUDA_VISIBLE_DEVICES", "--env", "GPU_DEVICE_ORDINAL",
        "--env", "ROCR_VISIBLE_DEVICES", "--device", "nvidia.com/gpu=all", "-v", "/r:/app:ro", "-w", "/app",
        "--ulimit", "nofile=4096:4096", "--entrypoint", "python", "img", "-V",
    ]


def test_mount_specs_mount_bare_paths_at_their_own_place():
    assert mount_specs(["/repo:/app", "/data", "/m:/m:ro"]) == ["/repo:/app", "/data:/data", "/m:/m:ro"]


@pytest.mark.parametrize(("setting", "environment", "expected"), [
    ("auto", {"MLFLOW_TRACKING_URI": "sqlite:////w/mlflow.db", "ZENML_STORE_URL": "sqlite:////w/z.db"}, "none"),
    ("auto", {"MLFLOW_TRACKING_URI": "http://node7:5000"}, "host"),
    ("auto", {"ZENML_STORE_URL": "https://zenml.site"}, "host"),
    ("auto", {"WEAVIATE_URL": "http://node3:8080"}, "host"),
    ("auto", {"HF_ENDPOINT": "https://huggingface.co"}, "none"),  # not a server the step must reach
    ("none", {"MLFLOW_TRACKING_URI": "http://node7:5000"}, "none"),
    ("host", {}, "host"),
])
def test_network_is_none_unless_the_job_talks_to_a_server(setting, environment, expected):
    assert job_network(setting, environment) == expected


def _fake_podman(tmp_path: Path) -> Path:
    """A podman that prints its arguments, then NAME=value for each --env NAME it was given."""
    fake = tmp_path / "bin" / "podman"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(
        "#!/bin/bash\n"
        'printf "ARG %s\\n" "$@"\n'
        "while (($#)); do\n"
        '  if [[ $1 == --env ]]; then\n'
        '    if [[ $2 == *"*" ]]; then compgen -e | grep "^${2%\\*}" | while read -r n; do echo "ENV $n=${!n}"; done\n'
        '    elif [[ -v $2 ]]; then echo "ENV $2=${!2}"; fi\n'
        "    shift\n"
        "  fi\n"
        "  shift\n"
        "done\n"
    )
    fake.chmod(0o755)
    return fake


def test_the_step_gets_the_env_file_slurm_and_gpu_variables_and_nothing_else(tmp_path):
    _fake_podman(tmp_path)
    secret = "s3cr3t value with spaces"
    launch = _launch(executable=str(tmp_path / "bin" / "podman"), global_args=())
    spec = _spec(tmp_path, launch, SlurmJobConfig(cpus_per_task=3))
    (tmp_path / "job.sbatch").write_text(render_job_script(spec))
    write_env_file(spec.env_path, {"MLFLOW_TRACKING_PASSWORD": secret, "PTWIKI_SOURCE_ROOT": "/app"})
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77", "SLURM_CPUS_PER_TASK": "3", "CUDA_VISIBLE_DEVICES": "1",
           "TMPDIR": str(tmp_path), "UNRELATED": "x", "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(tmp_path / "job.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    received = {line[4:].split("=", 1)[0]: line[4:].split("=", 1)[1] for line in lines if line.startswith("ENV ")}
    assert received == {
        "MLFLOW_TRACKING_PASSWORD": secret, "PTWIKI_SOURCE_ROOT": "/app", "OMP_NUM_THREADS": "3",
        "ZENML_CONFIG_PATH": "/tmp/ptwiki-zenml-77", "SLURM_JOB_ID": "77", "SLURM_CPUS_PER_TASK": "3",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    assert not any(secret in line for line in lines if line.startswith("ARG ")), "a secret on the command line"
    assert not spec.env_path.exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_podman_job_script_passes_shellcheck(tmp_path):
    path = tmp_path / "podman.sbatch"
    path.write_text(render_job_script(_spec(tmp_path, _launch(nv=True), SlurmJobConfig(gpus=1, requeue=True))))
    result = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_image_id_asks_podman_and_says_what_to_do_when_the_image_is_missing(tmp_path):
    fake = tmp_path / "podman"
    fake.write_text(f'#!/bin/bash\n[[ ${{@: -1}} == localhost/ptwiki-pipeline:abc ]] && echo {IMAGE_ID} && exit 0\n'
                    'echo "Error: no such image" >&2; exit 125\n')
    fake.chmod(0o755)
    assert image_id("localhost/ptwiki-pipeline:abc", str(fake)) == f"sha256:{IMAGE_ID}"
    with pytest.raises(PodmanImageError, match=r"containers/build\.sh pipeline.*hpc\.slurm\.image"):
        image_id("localhost/ptwiki-pipeline:other", str(fake))
    with pytest.raises(PodmanImageError, match="cannot ask"):
        image_id("x", str(tmp_path / "no-podman"))


def test_the_runtime_switch_keeps_a_podman_reference_and_none_runs_on_the_host(tmp_path):
    from ptwiki_llm.hpc.stack import _settings

    overrides = {"workdir": str(tmp_path), "hpc": {"container_runtime": "podman",
                                                   "slurm": {"image": "localhost/ptwiki-pipeline:latest"}}}
    config = load_config(REPO / "configs" / "local-slurm.yaml", overrides, environ={})
    assert _settings(config, config.hpc.slurm, []).image == "localhost/ptwiki-pipeline:latest"
    overrides["hpc"]["container_runtime"] = "none"
    config = load_config(REPO / "configs" / "local-slurm.yaml", overrides, environ={})
    assert _settings(config, config.hpc.slurm, []).image is None
    atena = load_config(REPO / "configs" / "atena.yaml", {"workdir": str(tmp_path)}, environ={})
    assert atena.hpc.container_runtime == "apptainer"
    assert _settings(atena, atena.hpc.slurm, []).image == f"{tmp_path}/images/ptwiki-pipeline.sif"


def test_a_step_in_a_podman_image_records_the_runtime_digest_and_lock(monkeypatch):
    from ptwiki_llm.provenance import container_image

    monkeypatch.setenv("container", "podman")
    monkeypatch.setenv("PTWIKI_IMAGE", "localhost/ptwiki-pipeline:abc")
    monkeypatch.setenv("PTWIKI_IMAGE_DIGEST", f"sha256:{IMAGE_ID}")
    monkeypatch.setenv("PTWIKI_IMAGE_LOCK_SHA256", "ab" * 32)
    assert container_image() == {"runtime": "podman", "image": "localhost/ptwiki-pipeline:abc",
                                 "digest": f"sha256:{IMAGE_ID}", "lock_sha256": "ab" * 32}
