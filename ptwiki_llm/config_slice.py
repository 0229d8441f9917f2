"""Each stage's slice of the run's config: the sections it declares, and nothing it can read besides.

A step receives only the sections its stage declares (``STAGE_SECTIONS``), so its ZenML cache key holds
only what its output depends on: changing the format settings re-runs format and leaves ingest and
validate served from ZenML's cache. Validated back into a Config, the sections left out would read as
their defaults, whatever the run set, so ``config_from_stage`` marks them: reading one raises
UndeclaredSectionError (serializing, hashing and copying still see the defaults).

Hashes recorded for lineage: ``Config.digest()`` of the whole run config (the MLflow parent run's
``ptwiki.config_sha256``, the ZenML pipeline run's ``config_sha256``) and ``slice_sha256`` of each stage's
slice (``ptwiki.slice_sha256`` on a step's MLflow run, ``config_slice_sha256`` on its ZenML step run).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from ptwiki_llm.cache_keys import EXTERNAL_STATE, restore_locations, strip_locations
from ptwiki_llm.config import Config
from ptwiki_llm.provenance import sha256_json

# Service URLs are not among them (ptwiki_llm.cache_keys); the ZenML and hpc sections are the driver's business.
_COMMON = ("preset", "workdir", "asset_path", "allow_hub_download", "seed", "mlflow")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("data.source", "data.hub_fallback", "data.max_articles", "data.wiki_base_url", "data.ingest"),
    "validate": ("data.validate",),
    "format": ("data.format", "data.knowledge", "models"),
    "index": ("rag", "models"),
    "train": ("train", "models"),
    "register": ("registry", "models"),
    # probes need the format split (data.format) and the train step's sample (train); RAG arms the rag section
    "evaluate": ("evaluation", "rag", "models", "registry", "train", "data.format", "data.knowledge"),
}


class UndeclaredSectionError(RuntimeError):
    """A stage read a config section it does not declare in ``STAGE_SECTIONS``."""


def config_for_stage(config: Config, stage: str) -> dict[str, Any]:
    """The stage's slice: the common keys and its declared sections, service URLs taken out."""
    full = config.to_dict()
    part: dict[str, Any] = {key: full[key] for key in _COMMON}
    for dotted in STAGE_SECTIONS[stage]:
        section, _, key = dotted.partition(".")
        if key:
            part.setdefault(section, {})[key] = full[section][key]
        else:
            part[section] = full[section]
    return strip_locations(part)


def config_from_stage(part: dict[str, Any]) -> Config:
    """Inside a step: the Config of its slice; a section the slice does not hold raises when read."""
    part = copy.deepcopy({key: value for key, value in part.items() if key != EXTERNAL_STATE})  # the caller's stays
    config = Config.model_validate(restore_locations(part))
    return _hide_missing(config, part, "")  # type: ignore[return-value]


def slice_sha256(config: Config, stage: str) -> str:
    """The hash of the stage's slice of ``config``: the same for the run's config and the step's own."""
    return sha256_json(config_for_stage(config, stage))


def _hide_missing(model: BaseModel, present: dict[str, Any], where: str) -> BaseModel:
    """``model`` with the fields whose key (alias, else name) is not in ``present`` unreadable, recursively."""
    cls = type(model)
    keys = {name: info.alias or name for name, info in cls.model_fields.items()}
    hidden = frozenset(name for name, key in keys.items() if key not in present)
    guarded = model.model_copy()
    for name, key in keys.items():
        value = model.__dict__.get(name)
        if name not in hidden and isinstance(value, BaseModel) and isinstance(present[key], dict):
            object.__setattr__(guarded, name, _hide_missing(value, present[key], f"{where}{key}."))
    if hidden:
        object.__setattr__(guarded, "__class__", _guarded_class(cls, hidden, {n: f"{where}{keys[n]}" for n in hidden}))
    return guarded


_CLASSES: dict[tuple[type[BaseModel], tuple[tuple[str, str], ...]], type[BaseModel]] = {}


def _guarded_class(cls: type[BaseModel], hidden: frozenset[str], dotted: dict[str, str]) -> type[BaseModel]:
    """A subclass of ``cls`` (same fields, same layout) whose ``hidden`` attributes raise when read."""
    key = (cls, tuple(sorted(dotted.items())))
    if key not in _CLASSES:

        def __getattribute__(self: BaseModel, name: str) -> Any:
            if name in hidden:
                raise UndeclaredSectionError(
                    f"config section {dotted[name]!r} is not in this step's config slice: add it to the stage's "
                    "entry in ptwiki_llm.config_slice.STAGE_SECTIONS (so the step's cache key holds it), or do "
                    "not read it in this step")
            return object.__getattribute__(self, name)

        def __reduce__(self: BaseModel) -> tuple[Any, ...]:
            # pickled as the plain class (the guard is a property of this process's slice, not of the data)
            return _plain, (cls, self.__getstate__())

        namespace = {"__getattribute__": __getattribute__, "__reduce__": __reduce__, "__slots__": (),
                     "__module__": cls.__module__, "__qualname__": cls.__qualname__}
        _CLASSES[key] = type(cls.__name__, (cls,), namespace)
    return _CLASSES[key]


def _plain(cls: type[BaseModel], state: dict[str, Any]) -> BaseModel:
    model = cls.__new__(cls)
    model.__setstate__(state)
    return model
