"""Serve the ZenML dashboard over the workdir's own ZenML store, on loopback.

What ``zenml login --local`` does (zenml/zen_server/deploy/daemon/daemon_zen_server.py), without its side
effect: that command also switches the client to the server it starts, so later runs would go through
HTTP. Here the server is a child process over the same SQLite store the pipeline writes, with its own
ZenML config folder, and the client keeps writing the database directly. Like ``zenml login --local``
it runs without authentication, so it binds 127.0.0.1 only: anyone who can open connections on this
machine's loopback can read it while it runs.

When the run's store is already a ZenML server (``hpc.services.zenml``), that server serves the
dashboard and nothing is started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

from ptwiki_llm.config import Config

DEFAULT_PORT = 8237  # zenml login --local's
LOOPBACK = "127.0.0.1"
APP = "zenml.zen_server.zen_server_api:app"


class DashboardError(RuntimeError):
    """The dashboard server could not start (port taken, server exited, no store)."""


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[bytes] | None  # None: an existing ZenML server serves the dashboard
    log: Path | None = None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def choose_port(requested: int | None) -> int:
    """``requested`` (an error when taken); else 8237, or a free port when 8237 is taken."""
    if requested:
        if not port_is_free(requested):
            raise DashboardError(f"port {requested} on {LOOPBACK} is in use: pick another with --port")
        return requested
    return DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()


def server_environment(store_url: str, local_stores_path: str, config_dir: Path, user_id: str) -> dict[str, str]:
    """The server's environment: the client's SQLite store, its artifact stores readable, no auth."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZENML_")}
    env.update({
        "ZENML_STORE_URL": store_url,
        # the server's own global config, so it never rewrites the client's (as the daemon's .zenconfig)
        "ZENML_CONFIG_PATH": str(config_dir),
        "ZENML_LOCAL_STORES_PATH": local_stores_path,
        "ZENML_USER_ID": user_id,
        "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH",
        "ZENML_SERVER_DEPLOYMENT_TYPE": "local",
        "ZENML_SERVER_AUTO_ACTIVATE": "true",
        # the artifact stores are local folders: let the dashboard show their visualizations
        "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",
        # the client created and migrated the database just before; the server must not race it
        "ZENML_DISABLE_DATABASE_MIGRATION": "true",
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
    })
    return env


def server_command(port: int, host: str = LOOPBACK) -> list[str]:
    return [sys.executable, "-m", "uvicorn", APP, "--host", host, "--port", str(port),
            "--no-server-header", "--log-level", "warning"]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes] | None, log: Path | None,
                       timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log and log.exists() else ""
            raise DashboardError(f"the ZenML server exited with code {process.returncode} before answering"
                                 + (f"; its log {log} ends with:\n{tail}" if tail else ""))
        try:
            with urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(0.5)
    raise DashboardError(f"the ZenML server at {url} did not answer /health within {timeout:.0f} s"
                         + (f" (log: {log})" if log else ""))


def run_url(base_url: str, project_name: str, run_id: str) -> str:
    """The dashboard page of one pipeline run (zenml.utils.dashboard_utils.get_run_url, server case)."""
    return f"{base_url.rstrip('/')}/projects/{project_name}/runs/{run_id}"


def last_run(client: Any) -> Any:
    runs = client.list_pipeline_runs(sort_by="desc:created", size=1, hydrate=True)
    return runs.items[0] if runs.items else None


def skip_signup_survey(client: Any) -> None:
    """Record the dashboard's first-visit survey as answered, with no e-mail and no news, for the local user.

    The dashboard shows it (name, e-mail, "receive news") until the user has ``email_opted_in`` set and
    ``finished_onboarding_survey`` in its metadata; on an offline, single-user store it only stands between
    the user and the run.
    """
    user = client.active_user
    if user.email_opted_in is not None and user.user_metadata.get("finished_onboarding_survey"):
        return
    client.update_user(user.id, updated_email_opt_in=False,
                       updated_metadata={**user.user_metadata, "finished_onboarding_survey": True})


def start_dashboard(config: Config, port: int | None = None, timeout: float = 120.0) -> tuple[Dashboard, Any]:
    """Start (or find) the dashboard for ``config``'s ZenML store; returns it and the last run (or None).

    ``prepare_zenml(config)`` must have run in this process (the CLI does it).
    """
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType

    gc = GlobalConfiguration()
    client = Client()
    run = last_run(client)  # also creates and migrates a fresh local store before the server opens it
    store = gc.store_configuration
    if store.type == StoreType.REST:
        return Dashboard(url=store.url.rstrip("/"), process=None), run
    if store.type != StoreType.SQL or not store.url.startswith("sqlite:"):
        raise DashboardError(f"the ZenML store is {store.url}: only a local SQLite store or a ZenML server is served")
    skip_signup_survey(client)
    chosen = choose_port(port)
    server_dir = config.zenml_config_path / "dashboard-server"
    server_dir.mkdir(parents=True, exist_ok=True)
    log = server_dir / "server.log"
    env = server_environment(store.url, gc.local_stores_path, server_dir, str(gc.user_id))
    url = f"http://{LOOPBACK}:{chosen}"
    with log.open("wb") as sink:
        process = subprocess.Popen(server_command(chosen), env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    dashboard = Dashboard(url=url, process=process, log=log)
    try:
        wait_until_healthy(url, process, log, timeout)
    except BaseException:
        dashboard.stop()
        raise
    return dashboard, run
