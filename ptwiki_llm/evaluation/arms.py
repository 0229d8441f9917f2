"""The arms of the comparison: which model (base, fine-tuned challenger, champion) with or without RAG.

Every arm sees the same items, prompts and decoding; RAG arms add the same retrieved passages. Arms
that share a model are evaluated while that model is loaded, then it is freed (one model in memory).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ptwiki_llm.config import Config
from ptwiki_llm.errors import PrerequisiteMissingError

if TYPE_CHECKING:
    from ptwiki_llm.registry import RegisteredAdapter


class EvaluationSetupError(PrerequisiteMissingError, RuntimeError):
    """Something the evaluation needs (a registered challenger, an index) is missing."""


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # "base" | "ft" | "champion"
    rag: bool


def arm_of(name: str) -> Arm:
    model, _, extra = name.partition("+")
    return Arm(name=name, model=model, rag=extra == "rag")


@dataclass(frozen=True)
class Versions:
    """Registered versions the fine-tuned arms use (None = not registered)."""

    challenger: str | None
    champion: str | None


def registry_versions(config: Config, registered: RegisteredAdapter | None) -> Versions:
    """The challenger (the version the pipeline just registered, else the alias) and the champion."""
    from ptwiki_llm.registry import RegistryError, resolve_version

    challenger = registered.version if registered else None
    if challenger is None:
        try:
            challenger = str(resolve_version(config, config.registry.challenger_alias).version)
        except RegistryError:
            challenger = None
    try:
        champion: str | None = str(resolve_version(config, config.registry.champion_alias).version)
    except RegistryError:
        champion = None
    return Versions(challenger=challenger, champion=champion)


def plan_arms(config: Config, versions: Versions) -> tuple[list[Arm], list[str]]:
    """The configured arms that can run, and notes on those left out (and why)."""
    arms: list[Arm] = []
    notes: list[str] = []
    for name in config.evaluation.arms:
        arm = arm_of(name)
        if arm.model == "ft" and versions.challenger is None:
            raise EvaluationSetupError(
                f"arm {name!r} needs a registered challenger, but {config.registry.model_name!r} has no alias "
                f"{config.registry.challenger_alias!r} in {config.mlflow_tracking_uri}; run `ptwiki-llm run` to "
                "train and register one, or leave the ft arms out (--set 'evaluation.arms=[base, base+rag]')"
            )
        if arm.model == "champion":
            if versions.champion is None:
                notes.append("champion: none registered yet, arm skipped (the gate compares with base)")
                continue
            if versions.champion == versions.challenger:
                notes.append(f"champion: it is the challenger (v{versions.champion}), arm skipped")
                continue
        arms.append(arm)
    return arms, notes


def load_arm_model(config: Config, model: str, versions: Versions) -> tuple[Any, Any]:
    """Model and tokenizer of an arm's model, from the model store and the registry only."""
    share = config.models.gpu_weights_share  # across the job's GPUs when it has several
    if model == "base":
        from ptwiki_llm.models.runtime import load_causal_lm

        return load_causal_lm(config, gpu_weights_share=share)
    from ptwiki_llm.registry import load_for_inference

    version = versions.challenger if model == "ft" else versions.champion
    assert version is not None  # plan_arms left out arms without a version
    return load_for_inference(config, version, gpu_weights_share=share)


def release_memory() -> None:
    """After the caller dropped its model: give the memory back before the next model loads."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
