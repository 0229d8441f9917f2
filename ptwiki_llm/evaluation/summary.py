"""Per-item results -> every metric of every arm, and the differences that matter, with bootstrap intervals.

Rows are per (task, arm, item). Within a task every arm scored the same items, so the arrays of all arms
are aligned by item id and one resample matrix serves every arm and every difference (paired intervals).
Metrics are named ``<task>.<metric>[.<group>]``: ``probes.accuracy.heldout``, ``qa.f1.seen``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ptwiki_llm.config import BootstrapConfig
from ptwiki_llm.evaluation.bootstrap import Statistic, bootstrap, difference, mean_of, ratio_of

COMPARISONS = (("ft", "base"), ("base+rag", "base"), ("ft+rag", "base+rag"), ("ft", "champion"))


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=float)


def _group_mean(values: np.ndarray, mask: np.ndarray) -> Statistic:
    return ratio_of(np.where(mask, values, 0.0), mask.astype(float))


def _grouped(stats: dict[str, Statistic], name: str, values: np.ndarray, groups: np.ndarray) -> None:
    """``name`` over all items and ``name.<group>`` over each group's items (a ratio, so resamples stay paired)."""
    stats[name] = mean_of(values)
    for group in sorted(set(groups)):
        stats[f"{name}.{group}"] = _group_mean(values, groups == group)


def _present(rows: Sequence[dict[str, Any]], key: str) -> bool:
    return bool(rows) and all(r.get(key) is not None for r in rows)


def task_statistics(task: str, rows: Sequence[dict[str, Any]], recall_k: Sequence[int] = ()) -> dict[str, Statistic]:
    """Statistics of one arm on one task; ``rows`` sorted by item id."""
    if task in ("lm", "lm_format"):
        nll, tokens, size = _column(rows, "nll"), _column(rows, "tokens"), _column(rows, "bytes")
        return {f"{task}.perplexity": ratio_of(nll, tokens, transform=np.exp),
                f"{task}.bits_per_byte": ratio_of(nll, size, scale=1 / math.log(2))}
    stats: dict[str, Statistic] = {}
    if task == "probes":
        groups = np.array([r["group"] for r in rows])
        _grouped(stats, "probes.accuracy", _column(rows, "correct"), groups)
        if _present(rows, "cloze_correct"):
            _grouped(stats, "probes.cloze_accuracy", _column(rows, "cloze_correct"), groups)
            _grouped(stats, "probes.gold_logprob", _column(rows, "gold_logprob"), groups)
        for key in ("source_in_sources", "same_article_retrieved"):
            if _present(rows, key):
                _grouped(stats, f"probes.{key}", _column(rows, key), groups)
    elif task == "qa":
        halves = np.array([r["half"] for r in rows])
        _grouped(stats, "qa.mc_accuracy", _column(rows, "mc_correct"), halves)
        if _present(rows, "f1"):
            _grouped(stats, "qa.exact_match", _column(rows, "exact_match"), halves)
            _grouped(stats, "qa.f1", _column(rows, "f1"), halves)
        if _present(rows, "loop_or_echo"):  # generated text that looped or only restated the question
            stats["qa.loop_or_echo"] = mean_of(_column(rows, "loop_or_echo"))
            for part in ("loop", "echo"):  # what the share is made of: cut repetitions, restated questions
                if _present(rows, part):
                    stats[f"qa.{part}"] = mean_of(_column(rows, part))
        if any("gold_rank" in r for r in rows):
            ranks = [r.get("gold_rank") for r in rows]
            for k in recall_k:
                stats[f"qa.recall@{k}"] = mean_of(np.array([rank is not None and rank <= k for rank in ranks], float))
    else:
        raise ValueError(f"unknown task {task!r}")
    if _present(rows, "answer_in_sources"):
        groups = np.array([r.get("group") or r.get("half") for r in rows])
        _grouped(stats, f"{task}.answer_in_sources", _column(rows, "answer_in_sources"), groups)
    return stats


def summarize(rows_by_task: dict[str, dict[str, list[dict[str, Any]]]], cfg: BootstrapConfig, seed: int,
              recall_k: Sequence[int] = ()) -> dict[str, Any]:
    """``rows_by_task[task][arm]`` (per-item rows) -> {"metrics": {arm: {metric: interval}},
    "differences": {"a - b": {metric: interval}}, "items": {task: n}}."""
    metrics: dict[str, dict[str, Any]] = {}
    differences: dict[str, dict[str, Any]] = {}
    items: dict[str, int] = {}
    for task, by_arm in sorted(rows_by_task.items()):
        ordered = {arm: sorted(rows, key=lambda r: r["item_id"]) for arm, rows in by_arm.items() if rows}
        ids = {arm: [r["item_id"] for r in rows] for arm, rows in ordered.items()}
        reference = next(iter(ids.values()), [])
        mismatched = [arm for arm, got in ids.items() if got != reference]
        if mismatched:
            raise ValueError(f"{task}: arms {mismatched} scored other items than the rest; every arm must see the "
                             "same items")
        n = len(reference)
        if n == 0:
            continue
        items[task] = n
        stats = {arm: task_statistics(task, rows, recall_k) for arm, rows in ordered.items()}
        for arm, named in stats.items():
            for metric, statistic in named.items():
                metrics.setdefault(arm, {})[metric] = bootstrap(
                    statistic, n, cfg.samples, seed, cfg.confidence).to_dict()
        for a, b in COMPARISONS:
            if a in stats and b in stats:
                for metric in sorted(set(stats[a]) & set(stats[b])):
                    differences.setdefault(f"{a} - {b}", {})[metric] = bootstrap(
                        difference(stats[a][metric], stats[b][metric]), n, cfg.samples, seed, cfg.confidence).to_dict()
    return {"metrics": metrics, "differences": differences, "items": items,
            "bootstrap": {"samples": cfg.samples, "confidence": cfg.confidence, "seed": seed}}
