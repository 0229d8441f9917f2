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


def test_the_report_says_what_an_arm_over_the_goal_is_made_of():
    from ptwiki_llm.evaluation.report import _loop_echo_lines

    def row(arm: str, item: int, loop: bool, echo: bool) -> dict:
        return {**_row(arm, item, loop or echo), "loop": float(loop), "echo": float(echo)}

    rows = {"qa": {"base": [row("base", i, i < 1, 1 <= i < 4) for i in range(20)],  # 1 loop + 3 echoes of 20
                   "ft": [row("ft", i, i < 1, False) for i in range(20)]}}  # 1 of 20: at the 5% goal
    result = summarize(rows, BootstrapConfig(samples=200), seed=0)
    assert result["metrics"]["base"]["qa.loop"]["value"] == 0.05
    assert result["metrics"]["base"]["qa.echo"]["value"] == 0.15
    (line,) = _loop_echo_lines(result)
    assert "base 20% (loop 5%, echo 15%)" in line and "ft " not in line
