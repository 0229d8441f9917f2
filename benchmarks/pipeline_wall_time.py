"""Benchmark: wall time of the whole default pipeline (`ptwiki-llm run`), from a fresh workdir and warm.

Runs README's pipeline command twice in the same new workdir: the first run does all the work
(staging the GGUF model, ingest, validate, format, train, register, index, evaluate); the second has
unchanged input and config, so ZenML serves every step from its cache. Each run is a fresh process
timed from start to exit (interpreter and imports included, as a user sees it); the per-step times
come from the ZenML store afterwards.

``--float32`` adds the --set overrides that turn bf16 autocast off everywhere (embeddings, training,
evaluation): on a CPU with native bf16 this stands in for one without it, and the result says so (add
``--set rag.embedding.quantization=none`` to stand in for a CPU without VNNI as well). The
header names the CPU's bf16 and VNNI support (they decide the default run's precisions and embedding
runtime); ``--shared-machine`` says other work ran on the machine meanwhile.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/pipeline_wall_time.py [--config configs/local.yaml]
       [--workdir DIR] [--set key=value ...] [--float32] [--shared-machine]
Writes benchmarks/results/pipeline_wall_time.{json,md}. Goal on a 2-core machine: fresh <= 10 min, warm < 1 min.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, describe_machine, write_results  # noqa: E402 - needs the sys.path line above

GOAL_FRESH_S = 600.0
GOAL_WARM_S = 60.0
FLOAT32_PATH = ["rag.embedding.bf16_autocast=false", "train.bf16_autocast=false", "evaluation.bf16_autocast=false"]


def timed_run(config: str, workdir: Path, sets: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "ptwiki_llm.cli", "run", "--config", config]
    for item in sets:
        command += ["--set", item]
    env = dict(os.environ, PTWIKI_WORKDIR=str(workdir), HF_HUB_OFFLINE="1", COLUMNS="160")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                         f"{result.stderr[-4000:]}")
    return {"wall_s": round(elapsed, 1), "stdout_tail": result.stdout[-3000:]}


def step_times(config: str, workdir: Path) -> list[dict[str, Any]]:
    """Per-step status and seconds of the workdir's pipeline runs, oldest first."""
    from ptwiki_llm.config import load_config
    from ptwiki_llm.zenml_env import prepare_zenml

    prepare_zenml(load_config(config, {"workdir": str(workdir)}))
    from zenml.client import Client

    runs = []
    for run in Client().list_pipeline_runs(sort_by="asc:created", size=50).items:
        steps = {}
        for name, step in run.steps.items():
            seconds = (step.end_time - step.start_time).total_seconds() if step.end_time and step.start_time else None
            steps[name] = {"status": str(step.status), "seconds": round(seconds, 1) if seconds is not None else None}
        runs.append({"run": run.name, "status": str(run.status), "steps": steps})
    return runs


def index_embedding(workdir: Path) -> str:
    """How the fresh run's index step embedded (runtime, quantization, precision), from its index report."""
    import json

    reports = sorted(workdir.rglob("index_report.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return "not recorded"
    embedding = json.loads(reports[0].read_text()).get("embedding", {})
    return ", ".join(f"{k} {v}" for k, v in embedding.items() if k != "model_sha256" and v) or "not recorded"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    fresh, warm = result["fresh"], result["warm"]
    lines = [
        "# Whole default pipeline: wall time, fresh and warm",
        "",
        f"`ptwiki-llm run --config {result['config']}`"
        + (f" with {', '.join(result['sets'])}" if result["sets"] else "")
        + f"; {describe_machine(m)}, Python {m['python']}; {m['date_utc']}.",
        "",
        ("Measured path: **float32 forced by --set on every bf16 autocast** (stands in for a CPU without native bf16)."
         if result.get("float32_forced") else
         f"Measured path: the defaults for this CPU ({'bf16 autocast' if m['cpu_native_bf16'] else 'float32'})."),
        f"Embeddings: {result.get('embedding', 'not recorded')}."
        + (" **Measured while other work shared the machine: the seconds are inflated.**"
           if result.get("shared_machine") else ""),
        "",
        "| run | wall s | goal s | met |",
        "| --- | ---: | ---: | --- |",
        f"| fresh workdir | {fresh['wall_s']} | {GOAL_FRESH_S:.0f} "
        f"| {'yes' if fresh['wall_s'] <= GOAL_FRESH_S else 'no'} |",
        f"| warm (same input and config: cached) | {warm['wall_s']} | {GOAL_WARM_S:.0f} "
        f"| {'yes' if warm['wall_s'] < GOAL_WARM_S else 'no'} |",
        "",
        "Per step (seconds; `cached` = served from ZenML's cache):",
        "",
        "| step | fresh | warm |",
        "| --- | ---: | ---: |",
    ]
    first, second = result["runs"][0]["steps"], result["runs"][-1]["steps"]
    for name in first:
        later = second.get(name, {})
        warm_cell = "cached" if "cached" in later.get("status", "") else str(later.get("seconds"))
        lines.append(f"| {name} | {first[name]['seconds']} | {warm_cell} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--workdir", type=Path, help="a new folder (default: a temporary one, removed after)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value config override")
    parser.add_argument("--float32", action="store_true", help="force the float32 path: " + " ".join(FLOAT32_PATH))
    parser.add_argument("--shared-machine", action="store_true", help="say that other work shared the machine")
    args = parser.parse_args()
    if args.float32:
        args.sets = FLOAT32_PATH + args.sets
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ptwiki-pipeline-bench-"))
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"{workdir} is not empty: the fresh run needs a new workdir")
    try:
        fresh = timed_run(args.config, workdir, args.sets)
        print(f"fresh: {fresh['wall_s']} s", flush=True)
        warm = timed_run(args.config, workdir, args.sets)
        print(f"warm: {warm['wall_s']} s", flush=True)
        result = {"config": args.config, "sets": args.sets,
                  "machine": benchmark_machine("zenml", "mlflow", "torch", "onnxruntime"),
                  "float32_forced": args.float32, "shared_machine": args.shared_machine,
                  "embedding": index_embedding(workdir), "fresh": fresh, "warm": warm,
                  "runs": step_times(args.config, workdir)}
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(result)
    write_results("pipeline_wall_time", result, text)
    print(text)


if __name__ == "__main__":
    main()
