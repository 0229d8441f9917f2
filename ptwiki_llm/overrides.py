"""``key.sub=value`` overrides and the merge of config trees: one parser and one merge for every entry point
(``ptwiki-llm --set``, ``python -m ptwiki_llm.training --set``, ``PTWIKI_*`` variables, presets' ``extends``)."""

from __future__ import annotations

from typing import Any

import yaml

from ptwiki_llm.errors import ConfigError


def set_nested(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    """``tree[k1][k2]...[kn] = value``, creating sections; a key that already holds a value is an error."""
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {'.'.join(keys)}: {key} was already given a value")
    node[keys[-1]] = value


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["data.max_articles=200", ...]`` -> ``{"data": {"max_articles": 200}}``; values are YAML."""
    tree: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE", "e.g. --set data.max_articles=200")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})",
                              "Quote lists and odd characters, e.g. --set 'evaluation.arms=[base, ft]'") from exc
        try:
            set_nested(tree, key.split("."), value)
        except ConfigError as exc:
            raise ConfigError(f"--set {pair!r}: {exc.args[0]}") from exc
    return tree


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: sections merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
