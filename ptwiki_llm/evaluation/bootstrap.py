"""Seeded bootstrap confidence intervals over evaluation items (percentile method).

Every statistic of one task is computed on the same resampled item sets (same seed, same item order),
so an interval for a difference between two arms is a *paired* interval: an item that is hard for
both arms moves both scores together and leaves the difference alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# idx has shape (..., n): rows of item indices; the statistic reduces the last axis
Statistic = Callable[[np.ndarray], np.ndarray | float]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resample(n: int, samples: int, seed: int) -> np.ndarray:
    """``samples`` rows of ``n`` item indices drawn with replacement; the same for the same arguments."""
    if n <= 0:
        raise ValueError("cannot bootstrap zero items")
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def bootstrap(statistic: Statistic, n: int, samples: int, seed: int, confidence: float = 0.95) -> Interval:
    """The statistic on all ``n`` items and its percentile interval over ``samples`` resamples."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    value = float(statistic(np.arange(n)))
    draws = np.asarray(statistic(resample(n, samples, seed)), dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Interval(value, math.nan, math.nan, n)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(value, float(low), float(high), n)


def mean_of(values: np.ndarray) -> Statistic:
    values = np.asarray(values, dtype=float)
    return lambda idx: values[idx].mean(axis=-1)


def ratio_of(numerator: np.ndarray, denominator: np.ndarray,
             transform: Callable[[np.ndarray], np.ndarray] | None = None, scale: float = 1.0) -> Statistic:
    """sum(numerator) / sum(denominator) * scale over the items, optionally transformed (e.g. exp)."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)

    def statistic(idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample without the group's items: NaN, dropped
            ratio = num[idx].sum(axis=-1) / den[idx].sum(axis=-1) * scale
        return transform(ratio) if transform is not None else ratio

    return statistic


def difference(a: Statistic, b: Statistic) -> Statistic:
    """a - b on the same resampled items (both statistics must index the same item order)."""
    return lambda idx: np.asarray(a(idx)) - np.asarray(b(idx))
