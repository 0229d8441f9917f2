"""The MLflow model registry for adapters: register (alias ``challenger``), promote (alias ``champion``), load.

A registered version holds the LoRA adapter and its tokenizer only, never the base weights
(``mlflow.transformers.log_model(..., base_model_path=<staged base>)``; registering reads no base weights either:
the adapter is checked against the base's config.json, ptwiki_llm/models/adapters.py), plus tags that say where it
came from: base model (name, staged path, weights sha256, Hub id + revision), dataset and config
hashes, git commit, container image. Loading back needs the registry and the model store, nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm import tracking
from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.assets import OFFLINE_VARS
from ptwiki_llm.config import Config
from ptwiki_llm.errors import PrerequisiteMissingError

if TYPE_CHECKING:
    from ptwiki_llm.training.trainer import BaseWeights, TrainResult

logger = logging.getLogger(__name__)

ADAPTER_NAME = "adapter"
# Packages a consumer needs to load the adapter (MLflow's own inference would add torchvision: pitfall).
REQUIRED_PACKAGES = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "mlflow")
TAG = "ptwiki."


class RegistryError(PrerequisiteMissingError, RuntimeError):
    pass


class RegisteredAdapter(StepArtifact):
    """The register step's output: the new registered-model version (alias ``challenger``) and its lineage."""

    name: str
    version: str
    alias: str
    model_uri: str
    alias_uri: str
    run_id: str
    base_model_path: str
    artifacts: list[str]
    """Every file of the logged model (adapter and tokenizer, never base weights)."""
    tags: dict[str, str]


class BaseModelMismatchError(RegistryError):
    """An adapter was trained on other base weights than the ones configured/staged here."""


def pip_requirements(config: Config) -> list[str]:
    if config.registry.pip_requirements is not None:
        return list(config.registry.pip_requirements)
    from packaging.version import Version

    pins = []
    for name in REQUIRED_PACKAGES:
        try:
            pins.append(f"{name}=={Version(metadata.version(name)).public}")  # torch 2.13.0+cpu -> 2.13.0
        except metadata.PackageNotFoundError:
            continue
    return pins


@contextmanager
def _offline() -> Iterator[None]:
    """MLflow contacts the Hub for model cards and licenses; the registry must work on air-gapped nodes."""
    saved = {name: os.environ.get(name) for name in OFFLINE_VARS}
    os.environ.update({name: "1" for name in saved})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def mlflow_client(config: Config) -> Any:
    from mlflow.tracking import MlflowClient

    tracking.setup(config)
    return MlflowClient()


def check_base(config: Config, base: BaseWeights) -> Path:
    """The staged base folder when it holds the weights ``base`` names; else BaseModelMismatchError."""
    from ptwiki_llm.models.staging import model_weights_dir, stage_manifest

    ref = config.models.base
    if base.name != ref.name:
        raise BaseModelMismatchError(
            f"the adapter was trained on base model {base.name!r} but models.base is {ref.name!r}; "
            f"load it with the config it was trained with (set models.base to {base.name!r}, e.g. the "
            f"preset that trained it)"
        )
    folder = model_weights_dir(config, ref)
    staged = (stage_manifest(ref, config) or {}).get("weights_sha256")
    if base.weights_sha256 and staged != base.weights_sha256:
        raise BaseModelMismatchError(
            f"base model {ref.name!r} staged in {folder} has weights sha256 {staged}, but the adapter was "
            f"trained on {base.weights_sha256} ({base.source or base.path}); re-stage the "
            f"original weights (`ptwiki-llm models stage {ref.name} --force` from the same source) or retrain"
        )
    return folder


def lineage(config: Config, trained: TrainResult) -> dict[str, str]:
    base = trained.base
    tags = {
        **{k: v for k, v in tracking.lineage_tags(config).items() if not k.startswith("mlflow.")},
        f"{TAG}dataset_sha256": trained.dataset_sha256 or "",
        f"{TAG}train_sha256": trained.train_sha256 or "",
        f"{TAG}eval_sha256": trained.eval_sha256 or "",
        f"{TAG}train_config_sha256": trained.config_sha256 or "",
        f"{TAG}train_run_id": trained.mlflow_run_id or "",
        f"{TAG}train_run_dir": trained.run_dir or "",
        f"{TAG}base.name": base.name or "",
        f"{TAG}base.path": base.path or "",
        f"{TAG}base.weights_sha256": base.weights_sha256 or "",
        f"{TAG}base.hub_id": base.hub_id or "",
        f"{TAG}base.revision": base.revision or "",
        f"{TAG}base.source": json.dumps(base.source, sort_keys=True),
        f"{TAG}global_step": str(trained.metrics.global_step),
    }
    for which in ("base", "tuned"):
        score = getattr(trained.heldout, which)
        for key in ("perplexity", "bits_per_byte"):
            if score is not None:
                tags[f"{TAG}heldout.{which}.{key}"] = f"{getattr(score, key):.4f}"
    return tags


def register_adapter(config: Config, trained: TrainResult, pipeline_run_id: str | None = None) -> RegisteredAdapter:
    """Log the trained adapter (not the base) as a new version of ``registry.model_name``, alias challenger.

    No base weights are read: the adapter is checked against the base's architecture (its config.json) and its
    files are logged as trained, so the register job of a 70B adapter needs the memory of the adapter only."""
    import mlflow

    from ptwiki_llm.models.runtime import load_staged_tokenizer, resolve_dtype

    adapter_dir = Path(trained.adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise RegistryError(f"no adapter in {adapter_dir} (adapter_config.json missing); rerun the train step")
    base_dir = check_base(config, trained.base)
    model = _adapter_model(base_dir, adapter_dir, resolve_dtype(config, "cpu"))
    name = config.registry.model_name
    tags = lineage(config, trained)
    with tracking.step_run(config, "register", pipeline_run_id) as run, _offline():
        tokenizer = load_staged_tokenizer(base_dir)
        tokenizer.padding_side = "left"
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name=ADAPTER_NAME,
            task="text-generation",
            base_model_path=str(base_dir),  # adapter + tokenizer only; the base is referenced, never copied
            pip_requirements=pip_requirements(config),
            metadata={"base": trained.base.model_dump(mode="json"), "heldout": trained.heldout.model_dump(mode="json")},
        )
        client = mlflow.tracking.MlflowClient()
        try:
            client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(name, description=f"LoRA adapters of {config.models.base.name} "
                                           "fine-tuned on Portuguese Wikipedia (ptwiki-llm)")
        version = client.create_model_version(name, info.model_uri, run_id=run.info.run_id, tags=tags)
        client.set_registered_model_alias(name, config.registry.challenger_alias, version.version)
        mlflow.set_tags({f"{TAG}registered_model": name, f"{TAG}registered_version": version.version, **tags})
        mlflow.log_params({"registry.model_name": name, "registry.version": version.version,
                           "registry.model_uri": info.model_uri})
        artifacts = sorted(_artifact_paths(client, run.info.run_id, info))
    return RegisteredAdapter(name=name, version=str(version.version), alias=config.registry.challenger_alias,
                             model_uri=info.model_uri, alias_uri=f"models:/{name}@{config.registry.challenger_alias}",
                             run_id=run.info.run_id, base_model_path=str(base_dir), artifacts=artifacts, tags=tags)


def _adapter_model(base_dir: Path, adapter_dir: Path, dtype: Any) -> Any:
    """The PEFT model MLflow's transformers flavor logs, over a meta-device base (models/adapters.py); refused with
    BaseModelMismatchError when the adapter does not fit the base's architecture."""
    from ptwiki_llm.models.adapters import ADAPTER_FILES, adapter_on_meta_base

    model, problems = adapter_on_meta_base(base_dir, adapter_dir, dtype)
    if problems:
        raise BaseModelMismatchError(
            f"the adapter in {adapter_dir} does not fit the base staged in {base_dir}: " + "; ".join(problems)
            + "; register it with the base it was trained on (models.base of the preset that trained it) or retrain"
        )

    def save_pretrained(folder: str | Path, **_: Any) -> None:
        # MLflow writes the adapter with the model's save_pretrained; this model's tensors are on the meta device
        # (no data), so the adapter's files are copied as the trainer wrote them.
        Path(folder).mkdir(parents=True, exist_ok=True)
        for file in ADAPTER_FILES:
            if (adapter_dir / file).is_file():
                shutil.copy2(adapter_dir / file, Path(folder) / file)

    model.save_pretrained = save_pretrained
    # a one-device map keeps the pipeline MLflow builds from moving the meta tensors to a real device
    model.base_model.model.hf_device_map = {"": "meta"}
    return model


def _artifact_paths(client: Any, run_id: str, info: Any) -> list[str]:
    """Every file of the logged model (to show, and test, that no base weights were copied)."""
    import mlflow

    root = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


def resolve_version(config: Config, which: str) -> Any:
    """'champion' | 'challenger' | any alias | a version number -> the ModelVersion."""
    import mlflow

    client = mlflow_client(config)
    name = config.registry.model_name
    try:
        if which.isdigit():
            return client.get_model_version(name, which)
        return client.get_model_version_by_alias(name, which)
    except mlflow.exceptions.MlflowException as exc:
        known = ", ".join(f"v{v['version']}{'@' + ','.join(v['aliases']) if v['aliases'] else ''}"
                          for v in list_versions(config)) or "none"
        raise RegistryError(
            f"no version {which!r} of registered model {name!r} in {config.mlflow_tracking_uri} "
            f"(versions: {known}); run the pipeline (ptwiki-llm run) to train and register one"
        ) from exc


def list_versions(config: Config) -> list[dict[str, Any]]:
    import mlflow

    client = mlflow_client(config)
    name = config.registry.model_name
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = client.search_model_versions(f"name='{name}'")
    return [_describe(v, aliases.get(str(v.version), [])) for v in sorted(versions, key=lambda v: int(v.version))]


def _describe(version: Any, aliases: list[str]) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": str(version.version),
        "aliases": sorted(aliases),
        "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
        "source": version.source,
        "run_id": version.run_id,
        "tags": dict(sorted((version.tags or {}).items())),
    }


def show_version(config: Config, which: str) -> dict[str, Any]:
    version = resolve_version(config, which)
    model = mlflow_client(config).get_registered_model(config.registry.model_name)
    aliases = [alias for alias, v in (model.aliases or {}).items() if str(v) == str(version.version)]
    return _describe(version, aliases)


def promote(config: Config, which: str, reason: str) -> dict[str, Any]:
    """Move alias ``champion`` to a version and record why (version tags + a registered-model tag)."""
    if not reason.strip():
        raise RegistryError("a promotion needs a reason (e.g. --reason 'lower held-out perplexity than v2')")
    client = mlflow_client(config)
    name = config.registry.model_name
    version = resolve_version(config, which)
    champion = config.registry.champion_alias
    try:
        previous = str(client.get_model_version_by_alias(name, champion).version)
    except Exception:
        previous = ""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    who = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    client.set_registered_model_alias(name, champion, version.version)
    record = {"version": str(version.version), "previous": previous, "reason": reason, "at": now, "by": who}
    client.set_model_version_tag(name, version.version, f"{TAG}promotion.reason", reason)
    client.set_model_version_tag(name, version.version, f"{TAG}promotion.at", now)
    client.set_model_version_tag(name, version.version, f"{TAG}promotion.previous_champion", previous)
    if who:
        client.set_model_version_tag(name, version.version, f"{TAG}promotion.by", who)
    if previous and previous != str(version.version):
        client.set_model_version_tag(name, previous, f"{TAG}demoted.at", now)
    client.set_registered_model_tag(name, f"{TAG}last_promotion", json.dumps(record))
    return record


def adapter_cache_dir(config: Config, version: Any) -> Path:
    return config.model_store / "registry" / version.name / str(version.version)


def download_adapter(config: Config, version: Any) -> Path:
    """The version's logged model (adapter + tokenizer + MLmodel), copied once into the model store."""
    import mlflow

    target = adapter_cache_dir(config, version)
    if (target / "MLmodel").is_file():
        return target
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(partial))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def load_for_inference(config: Config, which: str, gpu_weights_share: float | None = None) -> tuple[Any, Any]:
    """A registered version, its adapter merged into the base, ready to generate; registry and model store only.
    With ``gpu_weights_share`` and several GPUs visible, the base loads across them (load_causal_lm) and each
    layer's adapter merges on that layer's GPU."""
    from peft import PeftModel

    from ptwiki_llm.models.runtime import load_causal_lm, load_staged_tokenizer
    from ptwiki_llm.training.trainer import BaseWeights

    version = resolve_version(config, which)
    tags = version.tags or {}
    base = BaseWeights(name=tags.get(f"{TAG}base.name"), weights_sha256=tags.get(f"{TAG}base.weights_sha256"),
                       path=tags.get(f"{TAG}base.path"), source=json.loads(tags.get(f"{TAG}base.source") or "{}"))
    check_base(config, base)
    with _offline():
        folder = download_adapter(config, version)
        model, _ = load_causal_lm(config, gpu_weights_share=gpu_weights_share)
        model = PeftModel.from_pretrained(model, str(folder / "peft"), is_trainable=False)
        # Inference only: folding the LoRA deltas into the (unquantized) base weights removes the adapter's
        # extra matmuls from every forward pass (on the CPU, scoring through the adapter layers took
        # 1.8-2x base's time on the same items).
        model = model.merge_and_unload()
        tokenizer = load_staged_tokenizer(folder / "components" / "tokenizer")
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer
