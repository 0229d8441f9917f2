"""What a step's ZenML cache key holds: what its output depends on, and nothing else.

A step's parameters are its cache key. Where a service runs is not part of what a step produces: an
MLflow or Weaviate server restarted on another node (new host:port in ``<services>/<name>.url``) must
not re-ingest a dump. So service URLs are taken out of the stage configs and reach the steps through
the environment (``MLFLOW_TRACKING_URI``, ``WEAVIATE_URL``: exported by the runner, copied into SLURM jobs
by ``hpc.env_passthrough``). External state that does change an output goes in: the registered model's
identity (``register``, ``evaluate``) and its aliases (``evaluate``: which version is the champion arm),
and the vector store's contents (``index``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

from ptwiki_llm.config import Config

EXTERNAL_STATE = "external_state"  # key of a stage config that holds state read outside the config
# (section path, environment variable the step reads the value from)
LOCATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("mlflow", "tracking_uri"), "MLFLOW_TRACKING_URI"),
)


def _weaviate_env(part: dict[str, Any]) -> str:
    return part.get("rag", {}).get("store", {}).get("weaviate", {}).get("url_env") or "WEAVIATE_URL"


def strip_locations(part: dict[str, Any]) -> dict[str, Any]:
    """The stage config without service URLs (set to None where present)."""
    for path, _ in LOCATIONS:
        _set(part, path, None)
    _set(part, ("rag", "store", "weaviate", "url"), None)
    return part


def restore_locations(part: dict[str, Any]) -> dict[str, Any]:
    """Inside a step: the URLs back from the environment the runner (or the job's env file) set."""
    for path, variable in LOCATIONS:
        if os.environ.get(variable):
            _set(part, path, os.environ[variable])
    return part  # Weaviate's store reads rag.store.weaviate.url_env itself


def export_locations(config: Config) -> None:
    """Put the configured service URLs where steps (in this process or in SLURM jobs) read them."""
    if config.mlflow.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = config.mlflow.tracking_uri
    weaviate = config.rag.store.weaviate
    if weaviate.url:
        os.environ[weaviate.url_env] = weaviate.url


def registry_state(config: Config) -> dict[str, Any]:
    """The registered model's identity (its creation time: a reset registry has another) and aliases.

    ``register`` depends on the identity only: a version it registered stays valid while the model
    exists, and a new version of its own must not make the next run register again. ``evaluate`` also
    depends on the aliases (which version is champion).
    """
    import mlflow

    from ptwiki_llm.registry import mlflow_client

    try:
        model = mlflow_client(config).get_registered_model(config.registry.model_name)
    except mlflow.exceptions.MlflowException:
        return {"created": None, "aliases": {}}
    return {"created": model.creation_timestamp,
            "aliases": {alias: str(version) for alias, version in sorted((model.aliases or {}).items())}}


def _registry_state_file(config: Config) -> Path:
    return config.workdir_path / "models" / "registry-state.json"


def registry_cache_state(config: Config) -> dict[str, Any]:
    """The registry state for register's and evaluate's cache keys.

    The run's own register and evaluate move aliases (a new challenger, a promoted champion); a registry
    exactly as the last run left it keeps that run's key, so an unchanged re-run is served from the cache.
    Any other state (an alias moved by hand, a reset registry) gets a key never used before: a reset
    registry looks like the empty one of the first run, whose cached register output names a version that
    is gone.
    """
    current = registry_state(config)
    return _canonical(_kept_key(_registry_state_file(config), current) or {**current, "token": uuid4().hex})


def record_registry_state(config: Config, key: dict[str, Any]) -> None:
    """After a run that evaluated: remember the registry as it left it, and the key evaluate ran under."""
    _record_state(_registry_state_file(config), registry_state(config), key)


def _canonical(key: dict[str, Any]) -> dict[str, Any]:
    """Keys in sorted order at every level. ZenML hashes a step parameter as ``str(value)``, which follows the
    dict's insertion order: a key freshly built and the same key read back from its state file (written
    sorted) must print alike, or the unchanged re-run misses the cache."""
    return json.loads(json.dumps(key, sort_keys=True))


def _kept_key(state_file: Path, current: dict[str, Any]) -> dict[str, Any] | None:
    """The key the last run ran under, while the external state is exactly as that run left it."""
    if state_file.is_file():
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        if saved.get("after") == current:
            return saved["key"]
    return None


def _record_state(state_file: Path, after: dict[str, Any], key: dict[str, Any]) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"after": after, "key": key}, sort_keys=True), encoding="utf-8")


def recorded_index(config: Config) -> dict[str, Any] | None:
    """The last index run's record (``ptwiki-llm evaluate`` queries its collection), None when there is none."""
    from ptwiki_llm.rag.pointer import pointer_path

    path = pointer_path(config)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def store_state(config: Config) -> dict[str, Any]:
    """What ``index`` finds in the vector store before it runs: a changed (or wiped) store re-runs it.

    LanceDB: the collections of this prefix and their row counts, read from the files. Weaviate: the
    driver does not connect to the server (an embedded one would start here), so the last index record
    stands for its contents.
    """
    store = config.rag.store
    if store.backend != "lancedb":
        return {"backend": store.backend, "recorded_index": recorded_index(config)}
    folder = config.expand(store.lancedb_uri)
    if not folder.is_dir():
        return {"backend": "lancedb", "collections": {}}
    import lancedb

    db = lancedb.connect(str(folder))
    names: list[str] = []
    token = None
    while True:
        page = db.list_tables(page_token=token)
        names += page.tables
        token = page.page_token
        if not token:
            break
    prefix = store.collection or store.collection_prefix
    return {"backend": "lancedb", "collections": {
        name: db.open_table(name).count_rows() for name in sorted(names) if name.startswith(prefix)}}


def _state_file(config: Config) -> Path:
    return config.workdir_path / "rag" / f"store-state-{config.rag.store.backend}.json"


def index_cache_state(config: Config) -> dict[str, Any]:
    """The store state for index's cache key. A store exactly as the last index run left it keeps that
    run's key (so the run's own writes do not re-run index next time); any other store gets a key never
    used before (a wiped store looks like the empty one of the first run, whose cached output is stale)."""
    current = store_state(config)
    return _canonical(_kept_key(_state_file(config), current) or {"found": current, "token": uuid4().hex})


def record_index_state(config: Config, key: dict[str, Any]) -> None:
    """After a run that indexed: remember the store as it left it, and the key it ran under."""
    _record_state(_state_file(config), store_state(config), key)


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            return  # this stage does not hold the section
        node = node[key]
    if path[-1] in node:
        node[path[-1]] = value
