"""Evaluation in float32 vs bf16 autocast (evaluation.bf16_autocast): time, and how far the results move.

Runs `ptwiki-llm evaluate` twice on the workdir of a finished default run (same items, models and
index), once with evaluation.bf16_autocast=false and once with true, then compares the two
summary.json files metric by metric and the per-item results: probe candidates chosen, QA answers
generated. The gate's tags are written as in any `evaluate` (use a scratch workdir, e.g. the one
benchmarks/pipeline_wall_time.py --workdir leaves). Results: benchmarks/results/evaluation_precision.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/evaluation_precision.py --workdir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, describe_machine, write_results  # noqa: E402

SETTINGS = {"float32": "false", "bf16 autocast": "true"}
PER_ITEM = {"probes": "chosen", "qa": "answer"}


def evaluate(workdir: Path, config: str, autocast: str) -> tuple[float, Path]:
    command = [sys.executable, "-m", "ptwiki_llm.cli", "evaluate", "--config", config,
               "--set", f"evaluation.bf16_autocast={autocast}"]
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), HF_HUB_OFFLINE="1", COLUMNS="400")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    found = re.search(r"report: (\S+)/report\.md", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                         f"{done.stderr[-4000:]}")
    return wall, Path(found.group(1))


def items(folder: Path, task: str) -> dict[tuple[str, str], Any]:
    path = folder / "items" / f"{task}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    return {(r["arm"], r["item_id"]): r[PER_ITEM[task]] for r in rows}


def paired(full: dict[str, Any], half: dict[str, Any]) -> list[tuple[str, str, dict, dict]]:
    """(arm or difference, metric, float32 value, bf16 value) for every metric of a summary section."""
    return [(key, metric, value, half[key][metric])
            for key, metrics in full.items() for metric, value in metrics.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="workdir of a finished default run")
    parser.add_argument("--config", default="configs/local.yaml")
    args = parser.parse_args()

    runs: dict[str, dict[str, Any]] = {}
    for label, value in SETTINGS.items():
        wall, folder = evaluate(args.workdir, args.config, value)
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        runs[label] = {"wall_s": round(wall, 1), "folder": str(folder), "summary": summary}
        print(f"{label}: {wall:.1f} s, {folder}", flush=True)
    full, half = (runs[label]["summary"] for label in SETTINGS)
    rows, diffs = paired(full["metrics"], half["metrics"]), paired(full["differences"], half["differences"])
    agreement = {}
    for task in PER_ITEM:
        a, b = items(Path(runs["float32"]["folder"]), task), items(Path(runs["bf16 autocast"]["folder"]), task)
        agreement[task] = {"items": len(a), "same": sum(a[key] == b.get(key) for key in a)}
    result = {
        "benchmark": "evaluation_precision",
        "machine": benchmark_machine("torch", "transformers"),
        "workdir": str(args.workdir),
        "wall_s": {label: run["wall_s"] for label, run in runs.items()},
        "timings": {label: run["summary"]["timings"] for label, run in runs.items()},
        "agreement": agreement,
        "metrics": [{"arm": arm, "metric": metric, "float32": a["value"], "bf16": b["value"]}
                    for arm, metric, a, b in rows],
        "differences": [{"difference": name, "metric": metric, "float32": a["value"], "bf16": b["value"]}
                        for name, metric, a, b in diffs],
        "gate": {label: run["summary"]["gate"]["outcome"] for label, run in runs.items()},
    }
    m = result["machine"]

    def cell(v: dict[str, Any]) -> str:
        return f"{v['value']:.4f} [{v['low']:.3f}, {v['high']:.3f}]"

    lines = [
        "# Evaluation: float32 vs bf16 autocast, same items and models",
        "",
        f"{m['date_utc']}; {describe_machine(m)}; workdir of a default run.",
        "",
        "| precision | evaluation s (inside the step) | `ptwiki-llm evaluate` wall s |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {runs[label]['summary']['timings']['total_s']} | {runs[label]['wall_s']} |"
          for label in SETTINGS),
        "",
        "Per-item agreement: " + "; ".join(f"{task}: {a['same']} of {a['items']} identical ({PER_ITEM[task]})"
                                           for task, a in agreement.items())
        + f". Gate: {result['gate']['float32']} (float32), {result['gate']['bf16 autocast']} (bf16).",
        "",
        "| arm | metric | float32 | bf16 autocast |",
        "| --- | --- | --- | --- |",
        *(f"| {arm} | {metric} | {cell(a)} | {cell(b)} |" for arm, metric, a, b in rows),
        "",
        "| difference | metric | float32 | bf16 autocast |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | {metric} | {cell(a)} | {cell(b)} |" for name, metric, a, b in diffs),
    ]
    write_results("evaluation_precision", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
