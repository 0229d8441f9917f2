"""`ptwiki-llm index` / `evaluate` run as pipelines through hpc.orchestrator; `--here` keeps them in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptwiki_llm import runner
from ptwiki_llm.cli import app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def calls(monkeypatch, tmp_path):
    seen: list[tuple[str, str, dict]] = []

    def fake(config, which="full", **args):
        seen.append((which, config.hpc.orchestrator, args))
        raise RuntimeError("stop here")

    monkeypatch.setattr(runner, "run_pipeline", fake)
    monkeypatch.setenv("PTWIKI_WORKDIR", str(tmp_path))
    return seen


@pytest.mark.parametrize(("command", "pipeline", "args"), [
    (["index", "--limit", "3"], "index", {"max_articles": 3}),
    (["evaluate"], "evaluate", {}),
])
def test_stage_commands_go_through_the_configured_orchestrator(calls, command, pipeline, args):
    result = CliRunner().invoke(app, [*command, "--config", str(REPO / "configs" / "local-slurm.yaml")])
    # the fake's RuntimeError is no user error, so it reaches the caller as it is (a bug keeps its traceback)
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "stop here"
    assert calls == [(pipeline, "slurm", args)]  # jobs on the SLURM preset, never in this (login-node) process


@pytest.mark.parametrize("command", [["index"], ["evaluate"]])
def test_here_runs_in_this_process(calls, command):
    CliRunner().invoke(app, [*command, "--here", "--config", str(REPO / "configs" / "local-slurm.yaml")])
    assert [(which, orchestrator) for which, orchestrator, _ in calls] == [(command[0], "local")]
