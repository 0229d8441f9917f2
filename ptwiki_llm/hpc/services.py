"""Service discovery: the launchers in infra/ write ``<services dir>/<name>.url``; runs read them here.

A service is used only when its switch in ``hpc.services`` is on; then a missing URL file is an error
that says which launcher to start, never a silent fallback to a local store.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptwiki_llm.config import Config
from ptwiki_llm.errors import ServiceUnavailableError

LAUNCHERS = {
    "mlflow": "infra/mlflow/server.sbatch",
    "zenml": "infra/zenml/server.sbatch",
    "weaviate": "infra/weaviate/server.sbatch",
}


class ServiceNotRunning(ServiceUnavailableError, RuntimeError):
    """A configured service has no URL file: its launcher has not been started (or has stopped)."""


def services_dir(config: Config) -> Path:
    return config.expand(config.hpc.services.dir)


def url_file(config: Config, name: str) -> Path:
    if name not in LAUNCHERS:
        raise ValueError(f"unknown service {name!r}: expected one of {sorted(LAUNCHERS)}")
    return services_dir(config) / f"{name}.url"


def read_url(config: Config, name: str) -> str:
    path = url_file(config, name)
    try:
        url = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ServiceNotRunning(
            f"hpc.services.{name} is on but {path} does not exist: start the server first "
            f"(sbatch {LAUNCHERS[name]} with PTWIKI_SERVICES_DIR={path.parent}), or turn hpc.services.{name} off"
        ) from None
    if not url.startswith(("http://", "https://")):
        raise ServiceNotRunning(f"{path} holds {url!r}, not an http(s) URL")
    return url


def apply_services(config: Config) -> Config:
    """Point this run at the configured servers. Call before zenml is imported (it reads ZENML_STORE_URL)."""
    services = config.hpc.services
    if services.zenml and "ZENML_STORE_URL" not in os.environ:
        os.environ["ZENML_STORE_URL"] = read_url(config, "zenml")
    if services.weaviate and "WEAVIATE_URL" not in os.environ:
        os.environ["WEAVIATE_URL"] = read_url(config, "weaviate")
    if services.mlflow and not config.mlflow.tracking_uri:  # MLFLOW_TRACKING_URI lands there too
        url = read_url(config, "mlflow")
        config = config.model_copy(update={"mlflow": config.mlflow.model_copy(update={"tracking_uri": url})})
    return config
