"""The promotion gate: does the challenger replace the champion?

The challenger (arm ``ft``) is compared with the champion arm, or with ``base`` when there is no
champion. It passes when, on the primary metric, the lower bound of the paired bootstrap interval of its
improvement is positive and at least the margin (the point estimate alone decides nothing), and every
guard metric is decided within its tolerance: the whole interval of the regression stays inside it. A
guard whose point estimate regresses by more than the tolerance fails; one whose point is fine but whose
interval reaches past the tolerance is *undecided* (too few items to tell), which is not a pass. Missing
metrics fail the gate: a promotion is never made on evidence that was not measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ptwiki_llm.config import Config, GateConfig

LOWER_IS_BETTER = frozenset({"perplexity", "bits_per_byte", "loop_or_echo"})


def lower_is_better(metric: str) -> bool:
    """``<task>.<name>[.<group>]``: perplexity and bits per byte go down when a model gets better."""
    parts = metric.split(".")
    return len(parts) > 1 and parts[1] in LOWER_IS_BETTER


@dataclass
class Decision:
    outcome: str  # "promote" | "keep" | "skipped"
    challenger: str | None
    baseline: str  # "champion vN" | "base"
    reasons: list[str] = field(default_factory=list)
    primary: dict[str, Any] = field(default_factory=dict)
    guards: dict[str, Any] = field(default_factory=dict)
    applied: bool = False  # the champion alias was moved

    @property
    def passed(self) -> bool:
        return self.outcome == "promote"

    def summary(self) -> str:
        return f"{self.outcome}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _improvement(metric: str, challenger: float, baseline: float) -> float:
    """How much better the challenger is (positive = better), in the metric's units."""
    return baseline - challenger if lower_is_better(metric) else challenger - baseline


def decide(metrics: dict[str, dict[str, dict[str, float]]], difference: dict[str, dict[str, float]],
           cfg: GateConfig, challenger: str | None, champion: str | None, baseline_arm: str) -> Decision:
    """The decision from summary metrics: ``metrics[arm][metric]`` and ``difference[metric]`` (ft - baseline),
    each an interval {value, low, high}."""
    baseline = f"champion v{champion}" if baseline_arm == "champion" else "base"
    decision = Decision(outcome="keep", challenger=challenger, baseline=baseline)
    if challenger is None or "ft" not in metrics:
        decision.outcome = "skipped"
        decision.reasons.append("no challenger was evaluated (arm ft)")
        return decision
    if champion is not None and champion == challenger:
        decision.outcome = "skipped"
        decision.reasons.append(f"v{challenger} is already the champion")
        return decision
    if baseline_arm not in metrics:
        decision.outcome = "skipped"
        decision.reasons.append(f"the baseline arm {baseline_arm!r} was not evaluated")
        return decision
    ok = True
    name = cfg.primary_metric
    ours, theirs, diff = metrics["ft"].get(name), metrics[baseline_arm].get(name), difference.get(name)
    if ours is None or theirs is None or diff is None:
        decision.reasons.append(f"primary metric {name} was not measured for both arms")
        ok = False
    else:
        gain = _improvement(name, ours["value"], theirs["value"])
        low, high = sorted((_improvement(name, diff["low"], 0.0), _improvement(name, diff["high"], 0.0)))
        decision.primary = {"metric": name, "challenger": ours["value"], "baseline": theirs["value"],
                            "improvement": gain, "improvement_low": low, "improvement_high": high,
                            "margin": cfg.margin}
        interval = f"[{low:+.4f}, {high:+.4f}]"
        if not (low > 0 and low >= cfg.margin):  # NaN bounds (too few items to resample) fail here too
            decision.reasons.append(f"{name}: improvement {gain:+.4f} over {baseline}, interval {interval}: its lower "
                                    f"bound is not above zero and the margin {cfg.margin:.4f}")
            ok = False
        else:
            decision.reasons.append(f"{name}: improvement {gain:+.4f} over {baseline}, interval {interval}: lower "
                                    f"bound above the margin {cfg.margin:.4f}")
    for guard, tolerance in sorted(cfg.guard_metrics.items()):
        ours, theirs, diff = metrics["ft"].get(guard), metrics[baseline_arm].get(guard), difference.get(guard)
        if ours is None or theirs is None or diff is None:
            decision.guards[guard] = {"measured": False, "tolerance": tolerance, "status": "not measured"}
            decision.reasons.append(f"guard {guard} was not measured for both arms")
            ok = False
            continue
        gain = _improvement(guard, ours["value"], theirs["value"])
        worst = -min(_improvement(guard, diff["low"], 0.0), _improvement(guard, diff["high"], 0.0))
        if -gain > tolerance:
            status = "failed"
        elif worst <= tolerance:  # NaN (no interval) compares false: undecided
            status = "passed"
        else:
            status = "undecided"
        decision.guards[guard] = {"measured": True, "challenger": ours["value"], "baseline": theirs["value"],
                                  "improvement": gain, "worst_regression": worst, "tolerance": tolerance,
                                  "status": status, "passed": status == "passed"}
        if status == "failed":
            decision.reasons.append(f"guard {guard}: {ours['value']:.4f} vs {theirs['value']:.4f} ({baseline}), "
                                    f"worse by {-gain:.4f} > tolerance {tolerance:.4f}")
            ok = False
        elif status == "undecided":
            decision.reasons.append(f"guard {guard} undecided: {ours['value']:.4f} vs {theirs['value']:.4f} "
                                    f"({baseline}); the interval allows a regression of {worst:.4f} > tolerance "
                                    f"{tolerance:.4f} (too few items to decide)")
            ok = False
    if ok:
        decision.outcome = "promote"
    return decision


def apply_decision(config: Config, decision: Decision, evaluation_run_id: str | None) -> Decision:
    """Tag the challenger version with the decision; move the champion alias when it passed and
    ``gate.promote`` is on (through ``registry.promote``, which records the reason and previous champion)."""
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking
    from ptwiki_llm.registry import TAG, promote

    if decision.challenger is None or decision.outcome == "skipped":
        return decision  # nothing was decided about this version (not evaluated, or already champion)
    tracking.setup(config)
    client = MlflowClient()
    name = config.registry.model_name
    tags = {
        f"{TAG}gate.outcome": decision.outcome,
        f"{TAG}gate.baseline": decision.baseline,
        f"{TAG}gate.reasons": json.dumps(decision.reasons, ensure_ascii=False)[:5000],
        f"{TAG}gate.primary_metric": config.evaluation.gate.primary_metric,
        f"{TAG}gate.evaluation_run_id": evaluation_run_id or "",
    }
    if decision.primary:
        tags[f"{TAG}gate.primary_improvement"] = f"{decision.primary['improvement']:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.challenger, key, value)
    if decision.passed and config.evaluation.gate.promote:
        promote(config, decision.challenger, "evaluation gate: " + "; ".join(decision.reasons))
        decision.applied = True
    elif decision.passed:
        decision.reasons.append("gate passed, but evaluation.gate.promote is false: champion alias not moved")
    return decision
