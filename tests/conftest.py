"""Shared fixtures. Tests read the staged assets from PTWIKI_ASSET_PATH (CI: ../shared)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# the ``browser`` fixture (headless Chromium) for the browser tests
pytest_plugins = ["tests.browser"]

# On a CPU with VNNI rag.embedding.backend=auto picks ONNX int8 (ONNX float32 where torch would embed in float32
# without VNNI), exported once per model store; every test workdir has its own store, and the export (~25 s on
# 2 cores) in each would cost CI minutes. The tests' pipeline runs embed with torch;
# tests/rag/test_embedding_backend.py covers the ONNX runtimes and the 'auto' rule.
os.environ.setdefault("PTWIKI_RAG__EMBEDDING__BACKEND", "torch")


def pinned_environ() -> dict[str, str]:
    """What an in-process load_config of a test takes from the environment: the staged assets and the embedding
    runtime pinned above (so it opens the collections the tests' CLI runs built)."""
    return {k: v for k, v in os.environ.items() if k in ("PTWIKI_ASSET_PATH", "PTWIKI_RAG__EMBEDDING__BACKEND")}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every test starts without MLFLOW_TRACKING_URI: tests use their own stores, and
    mlflow.set_tracking_uri() exports the variable, which would leak into later tests and their subprocesses."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def _asset_folders() -> list[Path]:
    raw = os.environ.get("PTWIKI_ASSET_PATH", "")
    folders = [Path(p) for p in raw.split(os.pathsep) if p]
    return folders or [REPO.parent / "shared"]


def find_asset(name: str) -> Path | None:
    for folder in _asset_folders():
        if (folder / name).exists():
            return folder / name
    return None


@pytest.fixture(scope="session")
def asset():
    """asset("data/x") -> Path, skipping (with the reason) when the asset is not staged."""

    def _get(name: str) -> Path:
        found = find_asset(name)
        if found is None:
            pytest.skip(f"asset {name!r} not staged (set PTWIKI_ASSET_PATH; looked in {_asset_folders()})")
        return found

    return _get


@pytest.fixture(scope="session")
def asset_folders() -> list[Path]:
    return _asset_folders()


@pytest.fixture
def clean_env(monkeypatch):
    """Drop PTWIKI_* overrides from the developer's shell so config tests see only what they set."""
    for name in list(os.environ):
        if name.startswith("PTWIKI_") and name != "PTWIKI_ASSET_PATH":
            monkeypatch.delenv(name)
    return monkeypatch


def run_cli(workdir: Path, *args: str, max_articles: int = 80, timeout: int = 600,
            **env: str) -> subprocess.CompletedProcess[str]:
    """``ptwiki-llm ARGS --config configs/local.yaml`` in a fresh process on ``workdir``, offline."""
    environ = dict(os.environ, PTWIKI_WORKDIR=str(workdir), PTWIKI_DATA__MAX_ARTICLES=str(max_articles),
                   HF_HUB_OFFLINE="1", COLUMNS="200", **env)
    command = [sys.executable, "-m", "ptwiki_llm.cli", *args, "--config", str(REPO / "configs" / "local.yaml")]
    return subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout)


# every step on a slice of the sample, in a few minutes: a registered challenger, an index and an evaluation
TINY_RUN = ("--set", "train.max_steps=2", "--set", "train.eval_steps=2", "--set", "train.save_steps=2",
            "--set", "train.max_seq_length=64", "--set", "train.max_train_examples=8",
            "--set", "train.max_eval_examples=2", "--set", "evaluation.probes.count=4",
            "--set", "evaluation.qa.max_questions=2", "--set", "evaluation.lm.max_texts=2",
            "--set", "evaluation.max_new_tokens=4", "--set", "evaluation.bootstrap.samples=100")
TINY_RUN_ARTICLES = 12


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, asset) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """(workdir, output) of one `ptwiki-llm run` on 12 articles, shared by the tests that need a trained,
    registered and indexed workdir (the full-pipeline test, ask/compare, the arena)."""
    for name in ("data/ptwiki_namespace_0_sample.tar.gz", "models/smollm2-135m-instruct-gguf",
                 "models/multilingual-e5-small-enpt", "data/faquad_dev.json.gz"):
        asset(name)
    workdir = tmp_path_factory.mktemp("pipeline-run")
    result = run_cli(workdir, "run", *TINY_RUN, max_articles=TINY_RUN_ARTICLES, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def workdir_config(workdir: Path) -> Any:
    """The config of the CLI calls on a `pipeline_run` workdir, for in-process use (embedder on CPU)."""
    from ptwiki_llm.config import load_config

    return load_config(REPO / "configs" / "local.yaml",
                       {"workdir": str(workdir), "data": {"max_articles": TINY_RUN_ARTICLES},
                        "rag": {"embedding": {"device": "cpu"}}},
                       environ=pinned_environ())


def stage_slice(config: Any, stage: str) -> Any:
    """What a pipeline step gets: the stage's slice of ``config``, its undeclared sections unreadable."""
    from ptwiki_llm.config_slice import config_for_stage, config_from_stage

    return config_from_stage(config_for_stage(config, stage))
