"""A trained LoRA adapter over its base without the base's weights: the base is built on the meta device from its
``config.json`` alone, so a 70B adapter is checked and logged in the memory of the adapter, not of the base.

The check stands in for what loading the adapter into the real base verified: every module the adapter targets
exists in the base's architecture, and every tensor of the adapter file has the shape that architecture gives it
(PEFT's own naming and shapes, from the adapter config applied to the meta base), with none missing or extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = ("adapter_config.json", ADAPTER_WEIGHTS, "README.md")


def adapter_on_meta_base(base_dir: Path, adapter_dir: Path, dtype: Any) -> tuple[Any, list[str]]:
    """The PEFT model of the adapter's config over the base built from ``base_dir/config.json`` on the meta device
    (no weights read, no memory taken), and what keeps the adapter in ``adapter_dir`` from fitting that base."""
    from accelerate import init_empty_weights
    from peft import PeftConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(base_dir), local_files_only=True)
    with init_empty_weights():
        base = AutoModelForCausalLM.from_config(config, dtype=dtype)
    base.name_or_path = str(base_dir)
    adapter_config = PeftConfig.from_pretrained(str(adapter_dir))
    try:
        model = get_peft_model(base, adapter_config)
    except ValueError as exc:  # PEFT: a target module the base does not have
        return base, [f"the adapter's config does not fit the base's architecture: {exc}"]
    expected = {name: tuple(tensor.shape) for name, tensor in get_peft_model_state_dict(model).items()}
    return model, shape_problems(expected, adapter_shapes(adapter_dir))


def adapter_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the adapter file, read from the safetensors header (no tensor data)."""
    from safetensors import safe_open

    path = adapter_dir / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {adapter_dir}: rerun the train step (PEFT writes it)")
    with safe_open(str(path), "pt") as weights:
        return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118


def shape_problems(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                   shown: int = 3) -> list[str]:
    """Tensors the base's architecture expects but the file lacks, tensors it does not expect, and shape mismatches."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    if missing:
        problems.append(f"{len(missing)} adapter tensor(s) the base's architecture expects are missing, e.g. "
                        + ", ".join(missing[:shown]))
    if extra:
        problems.append(f"{len(extra)} adapter tensor(s) match no module of the base, e.g. " + ", ".join(extra[:shown]))
    if wrong:
        problems.append(f"{len(wrong)} adapter tensor(s) have shapes the base's layers do not, e.g. "
                        + ", ".join(f"{name} {list(found[name])} (base: {list(expected[name])})"
                                    for name in wrong[:shown]))
    return problems
