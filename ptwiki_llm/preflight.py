"""Checks made before any ZenML or MLflow set-up, so that bad input fails in a second, not after half a minute.

Each failed check raises a ``UserError`` (exit code 2) that names the file, key or URL and says what to
do. Nothing here imports ZenML, MLflow or a model library; nothing is downloaded or written.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ptwiki_llm.config import Config, ModelRef
from ptwiki_llm.errors import (
    EXIT_BAD_SETUP,
    ConfigError,
    ServiceUnavailableError,
    UserError,
    describe_validation_error,
    one_line,
)

# What each command will run: the data steps, then (full) train/register/index/evaluate.
NEEDS_MODELS = {"data": ("format",), "index": ("format", "embedder"), "evaluate": ("format", "base", "embedder"),
                "full": ("format", "base", "embedder")}
NEEDS_WEAVIATE = ("index", "evaluate", "full")
SERVICE_TIMEOUT_S = 3.0


def load_checked_config(path: Path | None, overrides: dict[str, Any]) -> Config:
    """The config, or a ConfigError naming the file (and line) or the key and value it refuses."""
    import yaml
    from pydantic import ValidationError

    from ptwiki_llm.config import load_config

    try:
        return load_config(path, overrides)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{_preset_in_error(exc, path)}: YAML syntax error{where}: {problem}",
                          "Fix the file (YAML: 'key: value', two-space indents)") from exc
    except ValidationError as exc:
        source = f"{path}, --set or PTWIKI_* variables" if path else "--set or PTWIKI_* variables"
        raise ConfigError(f"config ({source}): {describe_validation_error(exc)}",
                          "Fix the value, or run `ptwiki-llm info` to see every key and its default") from exc
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), "Pass an existing preset with --config (see configs/)") from exc
    except ValueError as exc:  # a preset that is not a mapping, an 'extends' loop, an override into a value
        raise ConfigError(one_line(str(exc))) from exc


def _preset_in_error(exc: Exception, path: Path | None) -> str:
    """The file a YAML error is in: the preset, or one it extends (named in the error's mark)."""
    mark = getattr(exc, "problem_mark", None)
    name = getattr(mark, "name", None)
    return name if name and not name.startswith("<") else str(path)


def preflight(config: Config, command: str = "full") -> None:
    """Raise the first problem that would stop ``command`` (data, index, evaluate or full)."""
    try:
        check_input(config)
        for ref in _models_needed(config, command):
            check_model(ref, config)
        check_knowledge_file(config)  # the format step reads it, so every pipeline needs it
        check_mlflow(config)
        check_zenml_server()
        if command in NEEDS_WEAVIATE and config.rag.store.backend == "weaviate":
            check_weaviate(config)
    except UserError as exc:
        exc.exit_code = EXIT_BAD_SETUP
        raise


def check_input(config: Config) -> None:
    """The corpus input exists (or will be fetched from the Hub, for the default sample) and is recognised."""
    from ptwiki_llm.assets import hub_download_planned, hub_offline, resolve_data_source
    from ptwiki_llm.data.detect import detect_source

    if hub_download_planned(config) and config.allow_hub_download and not hub_offline():
        return  # the run downloads it, loudly; its format is known
    detect_source(resolve_data_source(config))  # never downloads here: staged, cached, or an error


def _models_needed(config: Config, command: str) -> list[ModelRef]:
    from ptwiki_llm.models.refs import model_ref

    names = [config.data.format.tokenizer if need == "format" else
             config.rag.embedding.model if need == "embedder" else need for need in NEEDS_MODELS[command]]
    refs: dict[str, ModelRef] = {}
    for name in names:
        try:
            ref = model_ref(config, name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from exc
        refs[ref.name] = ref
    return list(refs.values())


def check_model(ref: ModelRef, config: Config) -> None:
    """Staged (asset path or model store), or downloadable from its Hub id where that is allowed."""
    from ptwiki_llm.assets import hub_offline
    from ptwiki_llm.models.refs import check_given_path, local_model_dir, require_model_dir

    if local_model_dir(ref, config) is not None:
        return
    check_given_path(ref, config)
    if ref.hub_id and config.allow_hub_download and not hub_offline():
        return  # downloaded on first use, loudly
    require_model_dir(ref, config)


def check_knowledge_file(config: Config) -> None:
    """The knowledge-injection QA file (data.knowledge.file) the format step and the QA task read."""
    from ptwiki_llm.assets import find_staged
    from ptwiki_llm.errors import AssetMissingError

    name = config.data.knowledge.file
    if name and find_staged(name, config) is None:
        raise AssetMissingError(
            f"data.knowledge.file: {name!r} not found (asset path: {config.asset_path or 'unset'})",
            "Set PTWIKI_ASSET_PATH to the folder holding it, point data.knowledge.file at a SQuAD v1/v2 JSON, "
            "or turn knowledge injection off (--set data.knowledge.file=null)",
        )


def check_mlflow(config: Config) -> None:
    """A sqlite store's folder can be created; a tracking server answers and accepts our credentials."""
    uri = config.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        _check_writable(Path(uri.removeprefix("sqlite:///")).parent, "the MLflow database folder")
        return
    if not uri.startswith(("http://", "https://")):
        return
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    headers = {}
    if user and password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    probe = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?experiment_name={config.mlflow.experiment}"
    status = _http_status(probe, headers, "MLflow tracking server", "mlflow.tracking_uri / MLFLOW_TRACKING_URI")
    if status in (401, 403):
        raise ServiceUnavailableError(
            f"MLflow tracking server {uri} refused the credentials (HTTP {status})",
            "Check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)",
        )


def check_zenml_server() -> None:
    url = os.environ.get("ZENML_STORE_URL", "")
    if url.startswith(("http://", "https://")):
        _http_status(f"{url.rstrip('/')}/health", {}, "ZenML server", "hpc.services.zenml / ZENML_STORE_URL")


def check_weaviate(config: Config) -> None:
    weaviate = config.rag.store.weaviate
    url = weaviate.url or os.environ.get(weaviate.url_env)
    if weaviate.embedded or not url:
        return  # the store itself explains a missing URL; an embedded server is started by the run
    _http_status(f"{url.rstrip('/')}/v1/.well-known/ready", {}, "Weaviate server",
                 f"rag.store.weaviate.url / {weaviate.url_env}")


def _http_status(url: str, headers: dict[str, str], what: str, key: str) -> int:
    """The HTTP status of a GET, or ServiceUnavailableError when nothing answers."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=SERVICE_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailableError(
            f"{what} at {url.split('/api/')[0].split('/v1/')[0].removesuffix('/health')} is not reachable ({reason})",
            f"Start it, or fix {key}",
        ) from exc


def _check_writable(folder: Path, what: str) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {folder} cannot be created: {existing} is not writable",
                        "Choose a workdir you can write to (--set workdir=DIR or PTWIKI_WORKDIR)")
