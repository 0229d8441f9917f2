"""``ptwiki-llm dashboard``'s parts that need no server: the server's environment, ports, the run URL.

The command itself, with a real server and a browser, is in tests/test_dashboards.py (slow).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ptwiki_llm.dashboard import DashboardError, choose_port, run_url, server_command, server_environment


def test_server_environment_serves_the_client_store_without_the_clients_zenml_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ZENML_STORE_URL", "http://elsewhere:8237")  # a shell pointing at another server
    monkeypatch.setenv("ZENML_STORE_API_KEY", "ZENKEY_secret")
    monkeypatch.setenv("PTWIKI_SOMETHING", "kept")
    env = server_environment("sqlite:////w/zenml/zenml.db", "/w/zenml/local_stores", tmp_path / "server", "uid-1")
    assert env["ZENML_STORE_URL"] == "sqlite:////w/zenml/zenml.db"
    assert "ZENML_STORE_API_KEY" not in env
    assert env["ZENML_CONFIG_PATH"] == str(tmp_path / "server")
    assert env["ZENML_LOCAL_STORES_PATH"] == "/w/zenml/local_stores"
    assert env["ZENML_SERVER_AUTH_SCHEME"] == "NO_AUTH"
    assert env["ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS"] == "true"
    assert env["PTWIKI_SOMETHING"] == "kept"


def test_server_listens_on_loopback_only():
    command = server_command(9999)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "9999"


def test_a_requested_port_in_use_is_an_error_naming_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} .* in use"):
            choose_port(port)
    assert choose_port(port) == port  # free again


def test_run_url_is_the_dashboards_run_page():
    assert run_url("http://127.0.0.1:8237/", "default", "abc") == "http://127.0.0.1:8237/projects/default/runs/abc"


def test_dashboard_with_the_zenml_service_on_but_not_running_says_which_launcher(tmp_path: Path, clean_env):
    from typer.testing import CliRunner

    from ptwiki_llm.cli import app

    clean_env.setenv("PTWIKI_WORKDIR", str(tmp_path))
    clean_env.setenv("PTWIKI_HPC__SERVICES__ZENML", "true")
    clean_env.delenv("ZENML_STORE_URL", raising=False)
    result = CliRunner().invoke(app, ["dashboard"])
    assert result.exit_code == 2
    assert "infra/zenml/server.sbatch" in " ".join(result.output.split())
