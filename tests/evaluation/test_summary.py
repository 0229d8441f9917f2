"""Per-item rows -> metrics with intervals and paired differences, on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from ptwiki_llm.config import BootstrapConfig
from ptwiki_llm.evaluation.report import comparison_table, difference_table, markdown_report
from ptwiki_llm.evaluation.summary import summarize

CFG = BootstrapConfig(samples=200, seed=None)


def probe_rows(arm: str, correct: list[int], groups: list[str]) -> list[dict]:
    return [{"item_id": f"p{i}", "arm": arm, "correct": float(c), "cloze_correct": float(c), "gold_logprob": -float(i),
             "group": g} for i, (c, g) in enumerate(zip(correct, groups, strict=True))]


def rag_probe_rows(arm: str, correct: list[int], source: list[int], groups: list[str]) -> list[dict]:
    return [{"item_id": f"p{i}", "arm": arm, "correct": float(c), "answer_in_sources": 1.0,
             "source_in_sources": float(s), "same_article_retrieved": float(s), "group": g}
            for i, (c, s, g) in enumerate(zip(correct, source, groups, strict=True))]


def test_probe_metrics_groups_and_differences():
    groups = ["train", "train", "heldout", "heldout"]
    rows = {"probes": {"base": probe_rows("base", [0, 1, 0, 0], groups),
                       "ft": probe_rows("ft", [1, 1, 0, 1], groups)}}
    result = summarize(rows, CFG, seed=1)
    base, ft = result["metrics"]["base"], result["metrics"]["ft"]
    assert base["probes.accuracy"]["value"] == 0.25 and ft["probes.accuracy"]["value"] == 0.75
    assert ft["probes.accuracy.train"]["value"] == 1.0 and ft["probes.accuracy.heldout"]["value"] == 0.5
    assert base["probes.gold_logprob"]["value"] == pytest.approx(-1.5)
    diff = result["differences"]["ft - base"]["probes.accuracy"]
    assert diff["value"] == 0.5 and 0 <= diff["low"] <= diff["high"] <= 1  # ft never loses an item: diff >= 0
    assert result["items"] == {"probes": 4}


def test_rag_probes_report_the_share_that_retrieved_the_source_sentence():
    groups = ["train", "train", "heldout", "heldout"]
    rows = {"probes": {"base": probe_rows("base", [0, 1, 0, 0], groups),
                       "base+rag": rag_probe_rows("base+rag", [1, 1, 1, 0], [1, 0, 1, 0], groups)}}
    result = summarize(rows, CFG, seed=1)
    rag = result["metrics"]["base+rag"]
    assert rag["probes.source_in_sources"]["value"] == 0.5 and rag["probes.source_in_sources.heldout"]["value"] == 0.5
    assert "probes.cloze_accuracy" not in rag and "probes.cloze_accuracy" in result["metrics"]["base"]
    assert result["differences"]["base+rag - base"]["probes.accuracy"]["value"] == 0.5


def test_lm_metrics_are_pooled_over_texts():
    # nll 2 and 6 nats over 2 + 2 tokens and 4 + 4 bytes: perplexity e^2, bits/byte 8 / ln 2 / 8
    rows = {"lm": {"base": [{"item_id": "t0", "arm": "base", "nll": 2.0, "tokens": 2, "bytes": 4},
                            {"item_id": "t1", "arm": "base", "nll": 6.0, "tokens": 2, "bytes": 4}]}}
    metrics = summarize(rows, CFG, seed=1)["metrics"]["base"]
    assert metrics["lm.perplexity"]["value"] == pytest.approx(math.exp(2))
    assert metrics["lm.bits_per_byte"]["value"] == pytest.approx(1 / math.log(2))


def test_qa_rag_metrics_and_recall():
    def row(arm, i, f1, rank=None, rag=False):
        extra = {"answer_in_sources": float(rank is not None), "gold_rank": rank} if rag else {}
        return {"item_id": f"q{i}", "arm": arm, "half": "seen" if i == 0 else "heldout", "mc_correct": float(i == 0),
                "exact_match": float(f1 == 1), "f1": f1, **extra}

    rows = {"qa": {"base": [row("base", 0, 0.0), row("base", 1, 0.5)],
                   "base+rag": [row("base+rag", 0, 1.0, 1, True), row("base+rag", 1, 0.5, 3, True)]}}
    result = summarize(rows, CFG, seed=2, recall_k=(1, 4))
    rag = result["metrics"]["base+rag"]
    assert rag["qa.f1"]["value"] == 0.75 and rag["qa.exact_match"]["value"] == 0.5
    assert rag["qa.f1.seen"]["value"] == 1.0 and rag["qa.f1.heldout"]["value"] == 0.5
    assert rag["qa.mc_accuracy.seen"]["value"] == 1.0 and rag["qa.mc_accuracy.heldout"]["value"] == 0.0
    assert rag["qa.recall@1"]["value"] == 0.5 and rag["qa.recall@4"]["value"] == 1.0
    assert "qa.recall@1" not in result["metrics"]["base"]  # closed-book arms retrieve nothing
    assert result["differences"]["base+rag - base"]["qa.f1"]["value"] == pytest.approx(0.5)


def test_arms_must_score_the_same_items():
    rows = {"probes": {"base": probe_rows("base", [1, 0], ["train", "train"]),
                       "ft": probe_rows("ft", [1], ["train"])}}
    with pytest.raises(ValueError, match="same items"):
        summarize(rows, CFG, seed=1)


def test_tables_and_markdown():
    groups = ["train", "heldout"]
    rows = {"probes": {"base": probe_rows("base", [0, 1], groups), "ft": probe_rows("ft", [1, 1], groups)}}
    result = {**summarize(rows, CFG, seed=1), "arms": ["base", "ft"], "notes": ["closed-book"],
              "counts": {"probes": {"probes_train": 1, "probes_heldout": 1}},
              "gate": {"outcome": "keep", "challenger": "4", "baseline": "base", "reasons": ["too few items"],
                       "applied": False}}
    header, table = comparison_table(result)
    assert header == ["metric", "base", "ft"] and table[0][0] == "probes.accuracy ↑"
    assert table[0][1].startswith("0.500 [") and table[0][2] == "1.000 [1.000, 1.000]"
    assert difference_table(result)[0] == ["metric", "ft - base"]
    text = markdown_report(result)
    assert "**Promotion gate**: keep; challenger v4 vs base." in text and "- too few items" in text
