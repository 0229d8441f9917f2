"""The evaluation's loop-or-echo share of QA answers: a metric per arm, lower is better."""

from __future__ import annotations

from ptwiki_llm.config import BootstrapConfig
from ptwiki_llm.evaluation.gate import lower_is_better
from ptwiki_llm.evaluation.summary import summarize


def _row(arm: str, item: int, looped: bool) -> dict:
    return {"item_id": f"knowledge:{item}", "arm": arm, "file": "knowledge", "half": "seen" if item % 2 else "heldout",
            "mc_correct": 0.0, "exact_match": 0.0, "f1": 0.0, "loop_or_echo": float(looped)}


def test_the_share_of_looping_or_echoing_answers_is_a_qa_metric_per_arm():
    rows = {"qa": {"base": [_row("base", i, i < 3) for i in range(10)],
                   "ft": [_row("ft", i, i < 1) for i in range(10)]}}
    result = summarize(rows, BootstrapConfig(samples=200), seed=0)
    assert result["metrics"]["base"]["qa.loop_or_echo"]["value"] == 0.3
    assert result["metrics"]["ft"]["qa.loop_or_echo"]["value"] == 0.1
    assert round(result["differences"]["ft - base"]["qa.loop_or_echo"]["value"], 6) == -0.2
    assert lower_is_better("qa.loop_or_echo")
