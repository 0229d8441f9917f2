"""The pipeline through a real SLURM cluster (the one-node cluster of infra/local-slurm/start.sh).

Each test runs ``ptwiki-llm`` (or the requeue driver) in a subprocess with its own workdir, then checks
SLURM's own records (sacct, or scontrol when accounting is off) against what the orchestrator submitted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from ptwiki_llm.hpc.slurm import SlurmClient

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "local-slurm.yaml"


def _cli_env(workdir: Path, max_articles: int) -> dict[str, str]:
    return dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES=str(max_articles),
                HF_HUB_OFFLINE="1", COLUMNS="200")


def _cli(workdir: Path, *args: str, max_articles: int = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptwiki_llm.cli", *args, "--config", str(CONFIG)],
        cwd=REPO, env=_cli_env(workdir, max_articles), capture_output=True, text=True, timeout=900,
    )


def _submitted(workdir: Path) -> dict[str, dict]:
    (manifest,) = (workdir / "slurm").glob("*/jobs.json")
    return {job["step"]: job for job in json.loads(manifest.read_text())["jobs"]}


def _records(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, name, start and end of each job, as SLURM recorded them."""
    client = SlurmClient()
    if client.accounting:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", f"--jobs={','.join(job_ids)}", "--format=JobID,JobName,State,Start,End"],
            capture_output=True, text=True, check=True,
        ).stdout
        rows = [line.split("|") for line in out.splitlines() if line]
        return {r[0]: {"name": r[1], "state": r[2].split()[0], "start": r[3], "end": r[4]} for r in rows}
    records = {}
    for job_id in job_ids:
        fields = dict(t.split("=", 1) for t in subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True).stdout.split()
            if "=" in t)
        records[job_id] = {"name": fields["JobName"], "state": fields["JobState"], "start": fields["StartTime"],
                           "end": fields["EndTime"]}
    return records


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def mlflow_server(slurm_cluster, tmp_path):
    """infra/mlflow/server.sbatch as a SLURM job, running the venv's mlflow (no Apptainer here)."""
    pytest.importorskip("flask_wtf", reason="the MLflow server's basic auth needs mlflow[auth] (Flask-WTF)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PTWIKI_SERVICE_RUNTIME="host",
               PTWIKI_WORKDIR=str(tmp_path), PTWIKI_LOCAL_DIR=str(tmp_path / "node-local"), MLFLOW_PORT=str(port))
    (tmp_path / "node-local").mkdir()
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=1G", "--time=30",
         f"--output={tmp_path / 'mlflow-server.log'}", str(REPO / "infra" / "mlflow" / "server.sbatch")],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    url_file = tmp_path / "services" / "mlflow.url"
    deadline = time.monotonic() + 180
    while not url_file.exists():
        state = SlurmClient().states([job_id]).get(job_id)
        log = tmp_path / "mlflow-server.log"
        if (state and state.finished) or time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], check=False)
            pytest.fail(f"MLflow server job {job_id} did not publish its URL: {state}\n"
                        + (log.read_text()[-3000:] if log.exists() else ""))
        time.sleep(1)
    password = (tmp_path / "services" / "mlflow" / "admin.password").read_text().strip()
    yield {"url": url_file.read_text().strip(), "password": password, "job_id": job_id, "dir": tmp_path}
    # a plain scancel SIGKILLs at once; TERM lets the launcher back up its databases and remove the URL file
    subprocess.run(["scancel", "--signal=TERM", "--full", job_id], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not SlurmClient().states([job_id])[job_id].finished:
        time.sleep(1)
    assert not url_file.exists(), "the launcher must remove its URL file when it stops"
    assert (tmp_path / "services" / "mlflow" / "mlflow.db").stat().st_size > 0, "database backed up at exit"


def test_data_pipeline_runs_one_job_per_step_in_dependency_order(mlflow_server, asset, monkeypatch):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    workdir = mlflow_server["dir"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")  # passed through to every job (env file)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server["password"])
    monkeypatch.setenv("PTWIKI_HPC__SERVICES__MLFLOW", "true")  # track to the server in services/mlflow.url
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _cli(workdir, "data")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "ZenML run data_pipeline" in result.stdout and ": completed" in result.stdout

    jobs = _submitted(workdir)
    assert list(jobs) == ["ingest", "validate", "format_examples"]
    ingest, validate, fmt = (jobs[s] for s in ("ingest", "validate", "format_examples"))
    assert ingest["after_ok"] == [] and "--dependency" not in " ".join(ingest["command"])
    assert validate["after_ok"] == [ingest["job_id"]]
    assert fmt["after_ok"] == [validate["job_id"]]
    for job in (validate, fmt):
        assert f"--dependency=afterok:{job['after_ok'][0]}" in job["command"]
        assert "--kill-on-invalid-dep=yes" in job["command"]
    for job in jobs.values():
        assert not Path(job["env_file"]).exists(), "the 0600 env file must be gone after the run"
        log = Path(job["log"]).read_text()
        assert f"step {job['step']}: exit code 0" in log
        assert mlflow_server["password"] not in log and mlflow_server["password"] not in Path(job["script"]).read_text()

    records = _records([j["job_id"] for j in jobs.values()])
    assert {records[j["job_id"]]["state"] for j in jobs.values()} == {"COMPLETED"}
    for step, job in jobs.items():
        assert records[job["job_id"]]["name"].startswith(f"ptwiki-{step}-")
    assert _time(records[validate["job_id"]]["start"]) >= _time(records[ingest["job_id"]]["end"])
    assert _time(records[fmt["job_id"]]["start"]) >= _time(records[validate["job_id"]]["end"])

    # the steps wrote the same artifacts as under the local orchestrator, and tracked to the server
    (formatted,) = (workdir / "data" / "formatted").iterdir()
    assert json.loads((formatted / "summary.json").read_text())["example_count"]["train"] > 0
    assert not (workdir / "mlflow" / "mlflow.db").exists(), "nothing may fall back to a local MLflow store"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server["url"])
    experiment = client.get_experiment_by_name("ptwiki-llm")
    runs = client.search_runs([experiment.experiment_id])
    children = sorted(r.data.tags["ptwiki.step"] for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert children == ["format", "ingest", "validate"]
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1

    # the server "restarted on another node": a new host:port in its URL file (the same server under another
    # name here). Where MLflow runs is not what ingest produces: every step is served from the cache.
    url_file = workdir / "services" / "mlflow.url"
    url_file.write_text(mlflow_server["url"].replace("127.0.0.1", "localhost"))
    again = _cli(workdir, "data")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "served from cache: ingest, validate, format_examples" in " ".join(again.stdout.split())


def test_zenml_server_launcher_runs_as_a_job_and_serves_api_keys(slurm_cluster, tmp_path):
    """infra/zenml/server.sbatch as a SLURM job on the venv: auth on, a service account's API key connects a
    ZenML client (as the multi-node presets' jobs do), TERM stops it, removes its URL file, backs up its database."""
    from tests.zenml_server import ZenmlServer, free_port, launcher_env, wait_for_url_file

    env = launcher_env(tmp_path, free_port())
    log = tmp_path / "zenml-server.log"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G", "--time=30", f"--output={log}",
         str(REPO / "infra" / "zenml" / "server.sbatch")],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    services = tmp_path / "services"
    try:
        def job_ended() -> str | None:
            state = SlurmClient().states([job_id]).get(job_id)
            return f"job {job_id} {state}" if state and state.finished else None

        url = wait_for_url_file(services / "zenml.url", job_ended, log)
        server = ZenmlServer(url=url, admin_password=(services / "zenml" / "admin.password").read_text().strip(),
                             services=services)
        key = server.create_api_key("ptwiki-slurm-runs")
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
        client_env.update(ZENML_STORE_URL=url, ZENML_STORE_API_KEY=key, ZENML_ANALYTICS_OPT_IN="false",
                          ZENML_CONFIG_PATH=str(tmp_path / "client-config"))
        probe = subprocess.run(
            [sys.executable, "-c", "from zenml.client import Client; c = Client(); "
             "print(c.zen_store.type.value, c.active_user.name, c.active_stack_model.name)"],
            env=client_env, capture_output=True, text=True, timeout=300,
        )
        assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-3000:]
        assert probe.stdout.split()[-3:] == ["rest", "ptwiki-slurm-runs", "default"], probe.stdout
        assert key not in log.read_text()
    finally:
        subprocess.run(["scancel", "--signal=TERM", "--full", job_id], check=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not SlurmClient().states([job_id])[job_id].finished:
            time.sleep(1)
    assert not (services / "zenml.url").exists(), "the launcher must remove its URL file when it stops"
    assert (services / "zenml" / "zenml.db").stat().st_size > 0, "database backed up at exit"
    assert "databases backed up to" in log.read_text()


def test_a_failing_step_cancels_its_dependents_and_reports_job_and_log(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    # every article fails the Portuguese-score expectation, so validate fails the run
    result = _cli(tmp_path, "data", "--set", "data.validate.min_portuguese_score=0.99", max_articles=20)
    assert result.returncode == 1, result.stdout[-4000:]
    jobs = _submitted(tmp_path)
    validate_id, format_id = jobs["validate"]["job_id"], jobs["format_examples"]["job_id"]
    output = " ".join(result.stdout.split())  # rich wraps long lines
    assert f"step `validate` failed: SLURM job {validate_id} FAILED, exit code 1" in output
    assert f"log {jobs['validate']['log']} ends with:" in output
    assert "validation failed:" in output  # the step's own error, quoted from the log tail
    assert f"cancelled because of the failure: `format_examples` (job {format_id})" in output

    records = _records([j["job_id"] for j in jobs.values()])
    assert records[jobs["ingest"]["job_id"]]["state"] == "COMPLETED"
    assert records[validate_id]["state"] == "FAILED"
    assert records[format_id]["state"] == "CANCELLED"
    assert not Path(jobs["format_examples"]["log"]).exists(), "the dependent must never have started"


def test_interrupting_the_driver_cancels_the_run_jobs(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    process = subprocess.Popen(
        [sys.executable, "-m", "ptwiki_llm.cli", "data", "--config", str(CONFIG)],
        cwd=REPO, env=_cli_env(tmp_path, 2000), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # a shell running us in the background ignores SIGINT, and children inherit that: restore Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + 120
    # Ctrl-C counts once the driver waits on the jobs (its first status line)
    while not any("step `format_examples` job" in line for line in list(lines)) and time.monotonic() < deadline:
        time.sleep(0.2)
    submitted = [ln.split("submitted as job")[1].split()[0] for ln in list(lines) if "submitted as job" in ln]
    assert len(submitted) == 3, "".join(lines)[-3000:]
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=10)
    assert f"interrupted: cancelling jobs {', '.join(submitted)}" in "".join(lines)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = SlurmClient().states(submitted)
        if len(states) == 3 and all(info.finished for info in states.values()):
            break
        time.sleep(1)
    assert {info.state for info in states.values()} == {"CANCELLED"}, states


def test_preempted_step_is_requeued_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    """SIGUSR1 before a 2-minute limit -> checkpoint + exit 75 -> scontrol requeue -> resume; dependents wait.

    A requeued job waits ~2 minutes (its begin time) and would get the same early warning again; as
    a cluster operator would, the test lets it start in 5 seconds and gives the resumed attempt 3 minutes.
    """
    if os.geteuid() != 0:
        pytest.skip("releasing the requeued job early (scontrol update StartTime/TimeLimit) needs a SLURM operator")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "hpc" / "slurm_driver.py"), str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    released = False
    deadline = time.monotonic() + 420
    while process.poll() is None and time.monotonic() < deadline:
        count_job = next((ln.split("as job")[1].split()[0] for ln in list(lines) if "`count` submitted" in ln), None)
        if count_job and not released:
            info = SlurmClient().scontrol(count_job)
            if info and info.state == "PENDING" and info.reason == "BeginTime":
                # a few seconds, not "now": slurmd must first finish revoking the first attempt's credential,
                # or the new attempt is killed as "non-startable: Job credential revoked" (seen 1 run in 5)
                subprocess.run(["scontrol", "update", f"JobId={count_job}", "StartTime=now+5", "TimeLimit=3"],
                               check=True, capture_output=True)
                released = True
        time.sleep(1)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0, output[-5000:]
    assert released, "the count job was never requeued"

    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT "))[len("RESULT "):])
    assert result["status"] == "completed"
    assert result["count_attempts"] == ["retried", "completed"]  # ZenML saw one retry of the step
    checked = result["checked"]
    assert checked["attempt"] == 1 and 0 < checked["resumed_from"] < checked["done"]

    jobs = _submitted(tmp_path)
    count_id, check_id = jobs["count"]["job_id"], jobs["check"]["job_id"]
    log = Path(jobs["count"]["log"]).read_text()
    assert "count: SIGUSR1 at" in log and "exit code 75" in log
    assert f"requeueing job {count_id} (attempt 1 of 1)" in log
    assert f"count: starting at {checked['resumed_from']} of" in log
    assert "--requeue" in Path(jobs["count"]["script"]).read_text()
    assert "--signal=B:USR1@90" in Path(jobs["count"]["script"]).read_text()
    assert SlurmClient().scontrol(count_id).state == "COMPLETED"
    restarts = subprocess.run(["scontrol", "show", "job", "-o", count_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts.split()
    records = _records([count_id, check_id])
    assert _time(records[check_id]["start"]) >= _time(records[count_id]["end"])  # check waited for the requeue


def test_a_run_that_never_started_marks_no_other_run_failed(slurm_cluster, asset, tmp_path):
    """The runner names its run itself, so a failure before ZenML created it finds nothing to mark."""
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    result = subprocess.run([sys.executable, str(REPO / "tests" / "hpc" / "run_identity_driver.py"), str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads(lines[0][len("RESULT "):])
    assert outcome["error"] == "simulated: the ZenML server went away before the run existed"
    assert outcome["previous_status_before"] == outcome["previous_status_after"] == "completed"
    assert outcome["mlflow_runs_of_previous"] == [], "the previous run got an MLflow parent marked FAILED"
    assert outcome["job_scripts"] == [] and len(outcome["runs"]) == 1


def test_the_index_command_runs_index_as_a_job_not_on_the_login_node(slurm_cluster, asset, tmp_path):
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/multilingual-e5-small-enpt")
    result = _cli(tmp_path, "index", "--limit", "3", "--set", "rag.embedding.device=cpu", max_articles=10)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Vector index" in result.stdout and "orchestrator slurm" in result.stdout
    jobs = _submitted(tmp_path)
    assert list(jobs) == ["ingest", "validate", "format_examples", "index"]
    assert jobs["index"]["after_ok"] == [jobs["validate"]["job_id"]]
    log = Path(jobs["index"]["log"]).read_text()
    assert "step index: exit code 0" in log
    assert _records([jobs["index"]["job_id"]])[jobs["index"]["job_id"]]["state"] == "COMPLETED"
