"""The bootstrap on cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptwiki_llm.evaluation.bootstrap import bootstrap, difference, mean_of, ratio_of, resample


def test_constant_items_give_a_point_interval():
    interval = bootstrap(mean_of(np.full(50, 0.25)), 50, 500, seed=1)
    assert (interval.value, interval.low, interval.high, interval.n) == (0.25, 0.25, 0.25, 50)
    assert interval.excludes_zero()


def test_bernoulli_mean_matches_the_normal_approximation():
    # 120 of 400 correct: p = 0.3, standard error sqrt(0.3 * 0.7 / 400) = 0.0229, 95% half-width 0.0449
    values = np.array([1.0] * 120 + [0.0] * 280)
    interval = bootstrap(mean_of(values), 400, 4000, seed=7)
    assert interval.value == pytest.approx(0.3)
    half = 1.959964 * math.sqrt(0.3 * 0.7 / 400)
    assert interval.low == pytest.approx(0.3 - half, abs=0.006)
    assert interval.high == pytest.approx(0.3 + half, abs=0.006)


def test_paired_difference_removes_the_item_variance():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 10, size=200)  # items vary a lot ...
    b = a + 0.5  # ... but b is always exactly 0.5 better
    paired = bootstrap(difference(mean_of(b), mean_of(a)), 200, 1000, seed=3)
    assert paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5) and paired.excludes_zero()
    alone = bootstrap(mean_of(b), 200, 1000, seed=3)
    assert alone.high - alone.low > 2  # each arm's own interval is wide


def test_ratio_statistic_is_the_pooled_ratio():
    # perplexity-style: exp(sum nll / sum tokens) = exp((2 + 6) / (2 + 2)) = e^2, not the mean of e^1 and e^3
    interval = bootstrap(ratio_of(np.array([2.0, 6.0]), np.array([2.0, 2.0]), transform=np.exp), 2, 200, seed=0)
    assert interval.value == pytest.approx(math.exp(2))
    assert math.exp(1) - 1e-9 <= interval.low <= interval.high <= math.exp(3) + 1e-9


def test_same_seed_same_resamples_and_interval():
    assert np.array_equal(resample(30, 50, 11), resample(30, 50, 11))
    assert not np.array_equal(resample(30, 50, 11), resample(30, 50, 12))
    values = np.arange(30.0)
    assert bootstrap(mean_of(values), 30, 300, 5) == bootstrap(mean_of(values), 30, 300, 5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="zero items"):
        resample(0, 10, 1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap(mean_of(np.ones(3)), 3, 100, 1, confidence=1.0)
