"""Configuration: pydantic models, YAML presets and environment overrides.

Every default lives here and nowhere else. A preset (``configs/*.yaml``) overrides what differs
for a scale; environment variables override a preset:

- ``PTWIKI_<KEY>`` for a top-level key, ``PTWIKI_<SECTION>__<KEY>`` for a nested one
  (``PTWIKI_WORKDIR=/scratch/me``, ``PTWIKI_DATA__SOURCE=/dumps/ptwiki.xml.bz2``);
- ``PTWIKI_ASSET_PATH``: folders of staged assets, separated by ``:`` (see ``assets.py``).

Relative paths in a preset resolve against the current directory; ``$VAR`` is expanded; ``{workdir}``
in a path is replaced by the resolved working directory, so one key moves every artifact of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "PTWIKI_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HubDatasetFallback(_Section):
    """Where to fetch the corpus from when no staged copy is found and the Hub is reachable."""

    repo: str = "wikimedia/wikipedia"
    config: str = "20231101.pt"
    split: str = "train"
    max_articles: int | None = 5000


class IngestConfig(_Section):
    workers: int = Field(0, ge=0, description="worker processes; 0 = one per core")
    shard_size: int = Field(2000, ge=1, description="articles per parquet shard")
    batch_size: int = Field(64, ge=1, description="records handed to a worker at once")
    max_article_bytes: int = Field(
        4_000_000, ge=1, description="raw records larger than this are skipped as 'too_large'"
    )
    min_text_chars: int = Field(1, ge=0, description="shorter cleaned texts are skipped as 'empty'")


class ValidateConfig(_Section):
    # ~2.6% of the ptwiki sample is under 80 characters (fragments); one-sentence stubs above it stay.
    min_text_chars: int = 80
    max_text_chars: int = 1_000_000
    max_markup_per_kchar: float = Field(
        0.5, description="residual markup tokens per 1,000 characters allowed in an article"
    )
    min_portuguese_score: float = Field(
        0.15, description="share of tokens that are Portuguese stopwords, lower = quarantined"
    )
    max_failing_share: float = Field(
        0.10, ge=0, le=1, description="the step fails when more than this share is quarantined"
    )
    examples_in_error: int = 5


class FormatConfig(_Section):
    mode: Literal["instruction", "completion"] = "instruction"
    eval_fraction: float = Field(0.05, gt=0, lt=1)
    max_example_chars: int = Field(6000, ge=200, description="longer inputs/texts are cut at a sentence")
    min_section_chars: int = Field(100, ge=0, description="shorter sections yield no instruction")
    max_sections_per_article: int = Field(3, ge=0)
    completion_chunk_chars: int = Field(4000, ge=200)
    tokenizer: str = Field("base", description="'base' (the base model's tokenizer) or a model ref name")
    token_stats_sample: int = Field(2000, ge=0, description="examples tokenized for statistics; 0 = all")


class DataConfig(_Section):
    source: str = Field(
        "data/ptwiki_namespace_0_sample.tar.gz",
        description="absolute path, path relative to cwd, or a name resolved through the asset path",
    )
    hub_fallback: HubDatasetFallback | None = HubDatasetFallback()
    max_articles: int | None = Field(None, ge=1, description="stop after this many records read")
    wiki_base_url: str = "https://pt.wikipedia.org/wiki/"
    ingest: IngestConfig = IngestConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    format: FormatConfig = FormatConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class ModelRef(_Section):
    """A model named in config: a staged folder (asset name or path) and, where online, a Hub id."""

    name: str
    path: str | None = Field(None, description="asset name or path of a local folder")
    hub_id: str | None = None
    revision: str | None = None
    gguf_file: str | None = None


class ModelsConfig(_Section):
    base: ModelRef = ModelRef(
        name="smollm2-135m-instruct",
        path="models/smollm2-135m-instruct-gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    embedder: ModelRef = ModelRef(
        name="multilingual-e5-small-enpt",
        path="models/multilingual-e5-small-enpt",
        hub_id="cnmoro/portuguese-multilingual-e5-small",
    )
    store: str = Field("{workdir}/models", description="staged and converted models")


class MlflowConfig(_Section):
    tracking_uri: str | None = Field(
        None, description="None = sqlite database in the workdir; MLFLOW_TRACKING_URI wins over both"
    )
    artifact_location: str = "{workdir}/mlflow/artifacts"
    experiment: str = "ptwiki-llm"


class ZenmlConfig(_Section):
    config_path: str = Field("{workdir}/zenml", description="ZENML_CONFIG_PATH: holds the local store")
    enable_cache: bool = True


class Config(_Section):
    preset: str = "local"
    workdir: str = "./.ptwiki"
    asset_path: list[str] = Field(default_factory=list, description="folders of staged assets")
    allow_hub_download: bool = Field(
        True, description="fall back to the Hugging Face Hub when an asset is not staged"
    )
    seed: int = 42
    data: DataConfig = DataConfig()
    models: ModelsConfig = ModelsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    zenml: ZenmlConfig = ZenmlConfig()

    @field_validator("asset_path", mode="before")
    @classmethod
    def _split_path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> Config:
        workdir = Path(os.path.expandvars(self.workdir)).expanduser().resolve()
        object.__setattr__(self, "workdir", str(workdir))
        object.__setattr__(
            self, "asset_path", [str(Path(os.path.expandvars(p)).expanduser().resolve()) for p in self.asset_path]
        )
        return self

    # --- derived locations (one place, so `info` and the steps agree) ---
    def expand(self, template: str) -> Path:
        expanded = os.path.expandvars(template.replace("{workdir}", self.workdir))
        return Path(expanded).expanduser().resolve()

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir)

    @property
    def data_dir(self) -> Path:
        return self.workdir_path / "data"

    @property
    def model_store(self) -> Path:
        return self.expand(self.models.store)

    @property
    def mlflow_tracking_uri(self) -> str:
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.workdir_path / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> Path:
        return self.expand(self.mlflow.artifact_location)

    @property
    def zenml_config_path(self) -> Path:
        return self.expand(self.zenml.config_path)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """Content hash of the resolved config (stable key order)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _set_nested(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot override {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def _parse_env_value(raw: str) -> Any:
    """YAML-parse an override so numbers, booleans and lists work ("4", "false", "[a, b]")."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = dict(os.environ if environ is None else environ)
    known = set(Config.model_fields) | {"validate"}
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if keys[0] not in known:
            continue  # PTWIKI_* variables that are not config keys (e.g. test switches)
        value: Any = raw if keys == ["asset_path"] else _parse_env_value(raw)
        _set_nested(tree, keys, value)
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Preset file, then ``overrides`` (e.g. from the CLI), then the environment."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        tree = loaded
    tree = _merge(tree, overrides or {})
    tree = _merge(tree, env_overrides(environ))
    return Config.model_validate(tree)
