"""A real ZenML server for the tests: infra/zenml/server.sbatch on the venv (PTWIKI_SERVICE_RUNTIME=host),
and the few REST calls a test needs (log in, a service account with an API key, a run's steps).

The launcher runs with auth on (OAuth2 password bearer): an admin whose password it keeps in
``<services>/zenml/admin.password``, as on a cluster. Runs connect as the multi-node presets do:
``hpc.services.zenml`` reads the URL file, ``ZENML_STORE_API_KEY`` holds a service account's key.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "infra" / "zenml" / "server.sbatch"
API = "/api/v1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launcher_env(workdir: Path, port: int) -> dict[str, str]:
    """The launcher on the venv, bound to loopback, its databases under ``workdir``."""
    local = workdir / "node-local"
    local.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZENML_")}
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PTWIKI_SERVICE_RUNTIME="host",
               PTWIKI_WORKDIR=str(workdir), PTWIKI_LOCAL_DIR=str(local), PTWIKI_SERVICE_HOST="127.0.0.1",
               ZENML_BIND="127.0.0.1", ZENML_PORT=str(port))
    return env


@dataclass
class ZenmlServer:
    url: str
    admin_password: str
    services: Path  # the URL file, secrets and database backups

    def login(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """Bearer headers for the admin (default) or, with ``password`` only, for an API key."""
        form = {"password": password if password is not None else self.admin_password}
        if username is not None or password is None:
            form["username"] = username or "admin"
        response = requests.post(f"{self.url}{API}/login", data=form, timeout=60)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def create_api_key(self, account: str) -> str:
        """A new service account and one API key for it (what a cluster user makes once for the runs)."""
        admin = self.login()
        created = requests.post(f"{self.url}{API}/service_accounts", json={"name": account, "active": True},
                                headers=admin, timeout=60)
        created.raise_for_status()
        key = requests.post(f"{self.url}{API}/service_accounts/{created.json()['id']}/api_keys",
                            json={"name": "pipeline-runs"}, headers=admin, timeout=60)
        key.raise_for_status()
        return str(key.json()["body"]["key"])

    def skip_signup_survey(self, headers: dict[str, str]) -> None:
        """Answer the dashboard's first-visit survey for this user (no e-mail, no news), as a person does once."""
        response = requests.put(f"{self.url}{API}/current-user", headers=headers, timeout=60,
                                json={"email_opted_in": False, "user_metadata": {"finished_onboarding_survey": True}})
        response.raise_for_status()

    def get(self, path: str, headers: dict[str, str], **params: Any) -> Any:
        response = requests.get(f"{self.url}{API}{path}", headers=headers, params=params, timeout=60)
        response.raise_for_status()
        return response.json()


def wait_for_url_file(url_file: Path, alive: Any, log: Path, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while not url_file.exists():
        failure = alive()
        if failure or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"the ZenML launcher did not publish {url_file}: {failure or 'timed out'}\n{tail}")
        time.sleep(1)
    return url_file.read_text(encoding="utf-8").strip()


@contextmanager
def launched_server(workdir: Path) -> Iterator[ZenmlServer]:
    """infra/zenml/server.sbatch run by bash (no SLURM), stopped with SIGTERM as scancel --signal=TERM does."""
    log = workdir / "zenml-server.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(["bash", str(LAUNCHER)], cwd=REPO, env=launcher_env(workdir, free_port()),
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    services = workdir / "services"
    url_file = services / "zenml.url"
    try:
        url = wait_for_url_file(url_file, lambda: process.poll() is not None and f"exit {process.returncode}", log)
        password = (services / "zenml" / "admin.password").read_text(encoding="utf-8").strip()
        yield ZenmlServer(url=url, admin_password=password, services=services)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the launcher's trap stops uvicorn and backs the database up
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert not url_file.exists(), "the launcher must remove its URL file when it stops"
    assert (services / "zenml" / "zenml.db").stat().st_size > 0, "database backed up at exit"
