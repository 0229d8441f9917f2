"""Shared fixtures. Tests read the staged assets from PTWIKI_ASSET_PATH (CI: ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the ``browser`` fixture (headless Chromium) for the browser tests
pytest_plugins = ["tests.browser"]


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
