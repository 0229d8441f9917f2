"""The README's results tables from an evaluation's ``summary.json``.

    python -m ptwiki_llm.evaluation.readme_table .ptwiki/evaluation/<key>/summary.json            # print
    python -m ptwiki_llm.evaluation.readme_table .ptwiki/evaluation/<key>/summary.json --write README.md

``--write`` replaces what lies between the ``<!-- results:begin -->`` and ``<!-- results:end -->``
markers of the file; everything else (the reading of the numbers) stays as written.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ROWS = (
    ("lm.bits_per_byte", "raw held-out article text, bits/byte ↓"),
    ("lm.perplexity", "raw held-out article text, perplexity ↓"),
    ("probes.accuracy", "probe questions, accuracy (multiple choice)"),
    ("probes.accuracy.train", "  articles in the fine-tuning texts"),
    ("probes.accuracy.heldout", "  held-out articles"),
    ("probes.cloze_accuracy", "masked sentences (cloze), accuracy"),
    ("probes.source_in_sources", "RAG probes whose passages hold the source sentence"),
    ("probes.answer_in_sources", "RAG probes whose passages hold the answer"),
    ("qa.mc_accuracy.seen", "knowledge QA, multiple choice, seen documents"),
    ("qa.mc_accuracy.heldout", "knowledge QA, multiple choice, held-out documents"),
    ("qa.f1.seen", "knowledge QA, generated F1, seen documents"),
    ("qa.f1.heldout", "knowledge QA, generated F1, held-out documents"),
    ("qa.exact_match.seen", "knowledge QA, exact match, seen documents"),
    ("qa.exact_match.heldout", "knowledge QA, exact match, held-out documents"),
    ("qa.recall@1", "knowledge QA, gold passage at rank 1"),
    ("qa.recall@4", "knowledge QA, gold passage in the top 4"),
    ("lm_format.bits_per_byte", "format: templated eval examples, bits/byte ↓"),
)


def _cell(interval: dict[str, float] | None, signed: bool = False) -> str:
    if not interval:
        return "-"
    fmt = "+.3f" if signed else ".3f"
    if interval["value"] > 100:
        fmt = "+.1f" if signed else ".1f"
    star = " *" if signed and (interval["low"] > 0 or interval["high"] < 0) else ""
    return f"{interval['value']:{fmt}} [{interval['low']:{fmt}}, {interval['high']:{fmt}}]{star}"


def tables(summary: dict[str, Any]) -> str:
    arms = [arm for arm in summary["arms"] if arm in summary["metrics"]]
    lines = ["| metric | " + " | ".join(arms) + " |", "| --- |" + " --- |" * len(arms)]
    for metric, label in ROWS:
        cells = [summary["metrics"][arm].get(metric) for arm in arms]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(_cell(c) for c in cells) + " |")
    pairs = list(summary["differences"])
    lines += ["", "Differences (* = the 95% interval excludes zero):", "",
              "| metric | " + " | ".join(pairs) + " |", "| --- |" + " --- |" * len(pairs)]
    for metric, label in ROWS:
        cells = [summary["differences"][pair].get(metric) for pair in pairs]
        if any(cells):
            lines.append(f"| {label.strip()} | " + " | ".join(_cell(c, signed=True) for c in cells) + " |")
    modes = summary.get("retrieval_modes") or {}
    if modes:
        keys = sorted({k for m in modes.values() for k in m}, key=lambda k: (k.startswith("mrr"), len(k), k))
        lines += ["", "Retrieval on the knowledge-injection questions:", "",
                  "| mode | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        lines += [f"| {mode} | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in keys) + " |"
                  for mode, m in modes.items()]
    gate = summary["gate"]
    lines += ["", f"Gate: **{gate['outcome']}** ({gate['baseline']}): " + "; ".join(gate["reasons"])]
    return "\n".join(lines)


def replace_between_markers(text: str, block: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {BEGIN} ... {END} markers in the file")
    return pattern.sub(lambda _: f"{BEGIN}\n{block}\n{END}", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("summary", type=Path, help="an evaluation's summary.json")
    parser.add_argument("--write", type=Path, help="replace the results block of this markdown file")
    args = parser.parse_args(argv)
    block = tables(json.loads(args.summary.read_text(encoding="utf-8")))
    if args.write:
        args.write.write_text(replace_between_markers(args.write.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        print(block)


if __name__ == "__main__":
    main()
