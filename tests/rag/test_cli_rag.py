"""`ptwiki-llm index` and `ptwiki-llm ask --rag` end to end: real data steps, embedder, LanceDB and base model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rag.conftest import EMBEDDER, REPO, SAMPLE

BASE = "models/smollm2-135m-instruct-gguf"


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES="30", HF_HUB_OFFLINE="1",
               COLUMNS="200", PTWIKI_RAG__EMBEDDING__DEVICE="cpu")
    command = [sys.executable, "-m", "ptwiki_llm.cli", *args, "--config", str(REPO / "configs" / "local.yaml")]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_index_then_ask_with_sources(tmp_path, asset):
    for name in (SAMPLE, EMBEDDER, BASE):
        asset(name)
    first = _cli(tmp_path, "index", "--limit", "6")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Vector index" in first.stdout and "Ptwiki_" in first.stdout
    again = _cli(tmp_path, "index", "--limit", "6")  # the store as the first run left it: cached
    assert again.returncode == 0 and "served from ZenML's cache" in again.stdout, again.stdout[-2000:]
    shutil.rmtree(tmp_path / "rag" / "lancedb")  # the store's contents are in index's cache key
    rebuilt = _cli(tmp_path, "index", "--limit", "6")
    assert rebuilt.returncode == 0 and "already indexed 0" in rebuilt.stdout, rebuilt.stdout[-2000:]
    assert "embedded 0," not in rebuilt.stdout

    asked = _cli(tmp_path, "ask", "O que é a Estrobilurina?", "--rag", "--k", "2", "--hybrid",
                 "--set", "rag.answer.max_new_tokens=24")
    assert asked.returncode == 0, asked.stdout[-3000:] + asked.stderr[-3000:]
    assert "Fontes" in asked.stdout and "[1] " in asked.stdout and "https://pt.wikipedia.org/wiki/" in asked.stdout

    no_adapter = _cli(tmp_path, "ask", "Qual é a capital de Portugal?", "--adapter", "champion")
    # a missing alias is a user error: one line naming it, no traceback
    assert no_adapter.returncode == 1 and "champion" in no_adapter.stderr, no_adapter.stderr[-2000:]
    assert "Traceback" not in no_adapter.stderr
