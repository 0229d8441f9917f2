"""``ptwiki-llm stack up``: registers flavor, orchestrator, artifact store and stack once; then only changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stack_up(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", "stack", "up", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_stack_up_is_idempotent_and_applies_config_changes(tmp_path):
    first = _stack_up(tmp_path, "--preset", "local-slurm")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered flavor ptwiki_slurm (ptwiki_llm.hpc.flavor.SlurmOrchestratorFlavor)" in first.stdout
    assert "created stack ptwiki-local-slurm" in first.stdout
    assert str(tmp_path / "zenml-artifacts") in first.stdout
    again = _stack_up(tmp_path, "--preset", "local-slurm")
    assert "none (already up to date)" in again.stdout
    changed = _stack_up(tmp_path, "--preset", "local-slurm", "--set", "hpc.slurm.mem=2G")
    assert "updated orchestrator ptwiki-local-slurm" in changed.stdout
    assert "created" not in changed.stdout


def test_stack_up_for_atena_says_which_server_to_start(tmp_path):
    result = _stack_up(tmp_path, "--preset", "atena")
    assert result.returncode == 2
    text = " ".join((result.stdout + result.stderr).split())
    assert "hpc.services.zenml is on but" in text and "sbatch infra/zenml/server.sbatch" in text
