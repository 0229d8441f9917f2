"""Every branch of the promotion gate, and what it records in the registry."""

from __future__ import annotations

import json

import pytest

from ptwiki_llm.config import Config, GateConfig
from ptwiki_llm.evaluation.gate import apply_decision, decide, lower_is_better


def iv(value: float, low: float | None = None, high: float | None = None) -> dict[str, float]:
    return {"value": value, "low": value if low is None else low, "high": value if high is None else high, "n": 100}


GATE = GateConfig(primary_metric="probes.accuracy", margin=0.02,
                  guard_metrics={"lm.bits_per_byte": 0.05, "qa.f1": 0.03})


def metrics(ft: dict, baseline: dict, baseline_arm: str = "base") -> dict:
    return {"ft": ft, baseline_arm: baseline}


GOOD_FT = {"probes.accuracy": iv(0.60), "lm.bits_per_byte": iv(1.10), "qa.f1": iv(0.30)}
BASE = {"probes.accuracy": iv(0.50), "lm.bits_per_byte": iv(1.12), "qa.f1": iv(0.31)}
# ft - base, with paired intervals: bits/byte -0.02 [-0.03, -0.01], F1 -0.01 [-0.02, 0.00] (inside tolerance 0.03)
GUARD_DIFF = {"lm.bits_per_byte": iv(-0.02, -0.03, -0.01), "qa.f1": iv(-0.01, -0.02, 0.0)}
WINNING_DIFF = {"probes.accuracy": iv(0.10, 0.04, 0.16), **GUARD_DIFF}


def test_promote_over_base_when_the_lower_bound_clears_the_margin_and_guards_hold():
    decision = decide(metrics(GOOD_FT, BASE), WINNING_DIFF, GATE, challenger="3", champion=None, baseline_arm="base")
    assert decision.outcome == "promote" and decision.passed and decision.baseline == "base"
    assert decision.primary["improvement"] == pytest.approx(0.10)
    assert decision.primary["improvement_low"] == pytest.approx(0.04)
    assert decision.guards["qa.f1"]["status"] == "passed" and decision.guards["lm.bits_per_byte"]["passed"]


def test_promote_over_the_champion():
    decision = decide(metrics(GOOD_FT, BASE, "champion"), WINNING_DIFF, GATE, challenger="3", champion="2",
                      baseline_arm="champion")
    assert decision.outcome == "promote" and decision.baseline == "champion v2"


def test_the_gate_uses_the_lower_bound_not_the_point_estimate():
    # point improvement 0.10 is far above the margin 0.02, but the lower bound 0.01 is not: keep
    decision = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "probes.accuracy": iv(0.10, 0.01, 0.19)}, GATE,
                      "3", None, "base")
    assert decision.outcome == "keep" and "lower bound is not above zero and the margin" in decision.reasons[0]
    # the same point estimate with a lower bound of 0.021 passes
    passing = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "probes.accuracy": iv(0.10, 0.021, 0.19)}, GATE,
                     "3", None, "base")
    assert passing.outcome == "promote"


def test_keep_when_the_interval_includes_zero():
    decision = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "probes.accuracy": iv(0.10, -0.01, 0.21)}, GATE, "3",
                      None, "base")
    assert decision.outcome == "keep" and "[-0.0100, +0.2100]" in decision.reasons[0]


def test_keep_when_a_guard_regresses_beyond_tolerance():
    ft = {**GOOD_FT, "qa.f1": iv(0.25)}  # 0.06 below base, tolerance 0.03
    decision = decide(metrics(ft, BASE), {**WINNING_DIFF, "qa.f1": iv(-0.06, -0.09, -0.03)}, GATE, "3", None, "base")
    assert decision.outcome == "keep" and decision.guards["qa.f1"]["status"] == "failed"
    assert any("guard qa.f1" in r and "worse by 0.0600" in r for r in decision.reasons)


def test_a_guard_with_too_few_items_to_decide_is_undecided_not_passed():
    # point estimate -0.01 is inside the tolerance 0.03, but the interval allows -0.12: undecided, and no promotion
    decision = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "qa.f1": iv(-0.01, -0.12, 0.10)}, GATE, "3", None,
                      "base")
    assert decision.outcome == "keep" and decision.guards["qa.f1"]["status"] == "undecided"
    guard = decision.guards["qa.f1"]
    assert not guard["passed"] and guard["worst_regression"] == pytest.approx(0.12)
    assert any("guard qa.f1 undecided" in r for r in decision.reasons)
    nan = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "qa.f1": iv(-0.01, float("nan"), float("nan"))}, GATE,
                 "3", None, "base")
    assert nan.guards["qa.f1"]["status"] == "undecided" and nan.outcome == "keep"


def test_lower_is_better_metrics_as_primary_and_guard():
    assert lower_is_better("lm.bits_per_byte") and lower_is_better("lm_format.perplexity")
    assert not lower_is_better("qa.f1")
    gate = GateConfig(primary_metric="lm.bits_per_byte", margin=0.01, guard_metrics={"lm.perplexity": 0.5})
    ft = {"lm.bits_per_byte": iv(1.00), "lm.perplexity": iv(20.3)}
    base = {"lm.bits_per_byte": iv(1.05), "lm.perplexity": iv(20.0)}
    # ft - base = -0.05 [-0.08, -0.02]: an improvement of 0.05 [0.02, 0.08]
    diff = {"lm.bits_per_byte": iv(-0.05, -0.08, -0.02), "lm.perplexity": iv(0.3, 0.1, 0.45)}
    decision = decide(metrics(ft, base), diff, gate, "3", None, "base")
    assert decision.outcome == "promote"
    assert decision.primary["improvement"] == pytest.approx(0.05)
    assert (decision.primary["improvement_low"], decision.primary["improvement_high"]) == pytest.approx((0.02, 0.08))
    worse = decide(metrics({**ft, "lm.perplexity": iv(21.0)}, base), {**diff, "lm.perplexity": iv(1.0, 0.8, 1.2)},
                   gate, "3", None, "base")
    assert worse.outcome == "keep"  # perplexity up by 1.0 > 0.5


def test_missing_metrics_fail_closed():
    decision = decide(metrics({"probes.accuracy": iv(0.6)}, {"probes.accuracy": iv(0.5)}), WINNING_DIFF, GATE,
                      "3", None, "base")
    assert decision.outcome == "keep" and decision.guards["qa.f1"]["measured"] is False
    no_primary = decide(metrics(GOOD_FT, BASE), GUARD_DIFF, GATE, "3", None, "base")
    assert no_primary.outcome == "keep" and "was not measured" in no_primary.reasons[0]


def test_skipped_without_challenger_or_when_it_is_already_champion_or_without_baseline():
    assert decide({"base": BASE}, {}, GATE, None, None, "base").outcome == "skipped"
    assert decide(metrics(GOOD_FT, BASE), WINNING_DIFF, GATE, "3", "3", "base").outcome == "skipped"
    assert decide({"ft": GOOD_FT}, WINNING_DIFF, GATE, "3", None, "base").outcome == "skipped"


# --- applying the decision: tags on the version, the champion alias through registry.promote -------------


@pytest.fixture
def registry_config(tmp_path, clean_env) -> Config:
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking

    config = Config(workdir=str(tmp_path))
    tracking.setup(config)
    client = MlflowClient()
    name = config.registry.model_name
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=(tmp_path / "model").as_uri())
    return config


def _version(config: Config, number: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_model_version(config.registry.model_name, number)


def _champion(config: Config) -> str | None:
    from mlflow.tracking import MlflowClient

    aliases = MlflowClient().get_registered_model(config.registry.model_name).aliases
    return aliases.get(config.registry.champion_alias)


def test_passing_decision_promotes_and_tags(registry_config):
    decision = decide(metrics(GOOD_FT, BASE), WINNING_DIFF, GATE, "2", None, "base")
    applied = apply_decision(registry_config, decision, "run123")
    assert applied.applied and str(_champion(registry_config)) == "2"
    tags = _version(registry_config, "2").tags
    assert tags["ptwiki.gate.outcome"] == "promote" and tags["ptwiki.gate.evaluation_run_id"] == "run123"
    assert json.loads(tags["ptwiki.gate.reasons"]) == decision.reasons
    assert tags["ptwiki.promotion.reason"].startswith("evaluation gate: probes.accuracy: improvement +0.1000")


def test_failing_decision_only_tags(registry_config):
    decision = decide(metrics(GOOD_FT, BASE), {**WINNING_DIFF, "probes.accuracy": iv(0.1, -0.01, 0.2)}, GATE, "2",
                      None, "base")
    applied = apply_decision(registry_config, decision, None)
    assert not applied.applied and _champion(registry_config) is None
    assert _version(registry_config, "2").tags["ptwiki.gate.outcome"] == "keep"


def test_report_only_gate_does_not_move_the_alias(registry_config):
    registry_config.evaluation.gate.promote = False
    decision = decide(metrics(GOOD_FT, BASE), WINNING_DIFF, GATE, "2", None, "base")
    applied = apply_decision(registry_config, decision, None)
    assert applied.passed and not applied.applied and _champion(registry_config) is None
    assert "evaluation.gate.promote is false" in applied.reasons[-1]
