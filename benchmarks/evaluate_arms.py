"""Benchmark: the evaluate step's arms, this checkout against an earlier commit, on the same items and models.

Reads the workdir of a finished default run (its articles, formatted splits, index and registered
challenger; nothing in it is written) and runs the evaluation's items, retrieval and every arm's tasks
twice in fresh processes: once with ``ptwiki_llm`` of ``--baseline`` (extracted with ``git archive``, put
first on PYTHONPATH) and once with this checkout, alternating per round, so both see the same machine load
and their ratio holds on a shared machine. Then it compares what the arms produced, row by row: the
probes' chosen candidates and scores, the QA choices and generated answers, the held-out NLLs, and every
metric of summary.json (bootstrap intervals included).

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/evaluate_arms.py --workdir DIR [--float32]
       [--baseline REF] [--rounds N] [--set key=value ...] [--probes N] [--qa N] [--shared-machine]
Writes benchmarks/results/evaluate_arms.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after PYTHONPATH: the worker imports ptwiki_llm from the baseline's copy there

FLOAT32_PATH = ["rag.embedding.bf16_autocast=false", "train.bf16_autocast=false", "evaluation.bf16_autocast=false"]
# per task: the fields that must be identical, and the float fields compared within a tolerance
SAME = {"probes": ("candidates", "chosen", "correct", "cloze_chosen", "cloze_correct", "sources"),
        "qa": ("choices", "mc_chosen", "mc_correct", "answer", "raw_answer", "loop", "echo", "sources"),
        "lm": ("tokens", "bytes"), "lm_format": ("tokens", "bytes")}
CLOSE = {"probes": ("scores", "gold_logprob"), "qa": ("exact_match", "f1"), "lm": ("nll",), "lm_format": ("nll",)}


# --- worker: one evaluation's items and arms, in whatever ptwiki_llm is first on the path -----------------


def _artifacts(workdir: Path) -> tuple[Any, Any]:
    from ptwiki_llm.data.format import FormattedData
    from ptwiki_llm.data.validate import ValidationResult

    (validated,) = sorted((workdir / "data" / "validated").iterdir())
    (formatted,) = sorted((workdir / "data" / "formatted").iterdir())
    (articles,) = sorted((workdir / "data" / "articles").iterdir())
    report = json.loads((validated / "validation.json").read_text(encoding="utf-8"))
    validation = ValidationResult.model_construct(
        articles_dir=str(articles), dataset_sha256=report.get("dataset_sha256"), dir=str(validated),
        quarantine=str(validated / "quarantine.parquet"))
    return validation, FormattedData.from_folder(formatted)


def _arm_tasks(ev_run: Any, model: Any, tokenizer: Any, arm: Any, items: Any, config: Any,
               timings: dict[str, float]) -> dict[str, list[dict[str, Any]]]:
    """The tasks of one arm as the evaluate step runs them (run.py: _run_arm), each timed on its own."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for task in ("lm", "lm_format", "probes", "qa"):
        start = time.perf_counter()
        if task in ("lm", "lm_format") and not arm.rag:
            texts = items.lm_texts if task == "lm" else items.lm_format_texts
            if not texts:
                continue
            tasks[task] = ev_run.run_lm(model, tokenizer, arm, texts, config, task, False)
        elif task == "probes" and items.probes:
            tasks[task] = ev_run.run_probes(model, tokenizer, arm, items, config, False)
        elif task == "qa" and items.qa is not None:
            tasks[task] = ev_run.run_qa(model, tokenizer, arm, items, config, False)
        else:
            continue
        timings[f"arm.{arm.name}.{task}_s"] = round(time.perf_counter() - start, 2)
    return tasks


def worker(args: argparse.Namespace) -> None:
    import torch

    import ptwiki_llm
    from ptwiki_llm.config import load_config
    from ptwiki_llm.data.ingest import iter_articles, shard_paths
    from ptwiki_llm.evaluation import run as ev_run
    from ptwiki_llm.evaluation.arms import arm_of, load_arm_model, registry_versions, release_memory
    from ptwiki_llm.evaluation.summary import summarize
    from ptwiki_llm.overrides import parse_overrides
    from ptwiki_llm.rag.pointer import current_collection

    config = load_config(args.config, {**parse_overrides(args.sets), "workdir": str(args.workdir)})
    ev = config.evaluation
    validated, formatted = _artifacts(args.workdir)
    articles = iter_articles(shard_paths(Path(validated.articles_dir)), validated.quarantined_ids())
    timings: dict[str, float] = {}
    start = time.perf_counter()
    items = ev_run.prepare_items(config, articles, formatted)
    timings["items_s"] = round(time.perf_counter() - start, 2)
    if args.probes is not None:
        items.probes = items.probes[: args.probes]
    if args.qa is not None and items.qa is not None:
        items.qa.items = items.qa.items[: args.qa]
    start = time.perf_counter()
    ev_run.retrieve(config, items, current_collection(config), False)
    timings["retrieval_s"] = round(time.perf_counter() - start, 2)
    versions = registry_versions(config, None)
    arms = [arm_of(name) for name in (args.arms or ev.arms)]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    model_attention: dict[str, str] = {}
    for model_name in dict.fromkeys(arm.model for arm in arms):
        start = time.perf_counter()
        model, tokenizer = load_arm_model(config, model_name, versions)
        timings[f"load.{model_name}_s"] = round(time.perf_counter() - start, 2)
        precision = ev_run.model_precision(model, ev.bf16_autocast)
        model_attention[model_name] = model.config._attn_implementation
        for arm in (a for a in arms if a.model == model_name):
            torch.manual_seed(config.seed)
            start = time.perf_counter()
            with torch.autocast(precision.device, dtype=torch.bfloat16, enabled=precision.autocast):
                for task, task_rows in _arm_tasks(ev_run, model, tokenizer, arm, items, config, timings).items():
                    rows.setdefault(task, {})[arm.name] = task_rows
            timings[f"arm.{arm.name}_s"] = round(time.perf_counter() - start, 2)
        model = tokenizer = None
        release_memory()
    summary = summarize(rows, ev.bootstrap, ev.bootstrap.seed if ev.bootstrap.seed is not None else config.seed,
                        ev.qa.recall_k)
    out = {"code": str(Path(ptwiki_llm.__file__).parent), "timings": timings, "rows": rows,
           "metrics": summary["metrics"], "differences": summary["differences"],
           "attention": model_attention, "threads": torch.get_num_threads()}
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, default=str))


# --- driver: both code versions, then the comparison -------------------------------------------------------


def _extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "ptwiki_llm"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _run_worker(args: argparse.Namespace, code: Path | None, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--workdir", str(args.workdir),
               "--config", args.config, "--out", str(out)]
    for item in args.sets:
        command += ["--set", item]
    for flag, value in (("--probes", args.probes), ("--qa", args.qa)):
        if value is not None:
            command += [flag, str(value)]
    if args.arms:
        command += ["--arms", *args.arms]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker ({code or 'this checkout'}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def _close(a: Any, b: Any) -> float:
    """Largest absolute difference between two numbers or lists of numbers."""
    if isinstance(a, list):
        return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
    return abs(float(a) - float(b))


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per task and arm: rows present in both, rows whose exact fields differ (with examples), largest float gap."""
    report: dict[str, Any] = {}
    for task, by_arm in before.items():
        for arm, rows in by_arm.items():
            old = {r["item_id"]: r for r in rows}
            new = {r["item_id"]: r for r in after.get(task, {}).get(arm, [])}
            differing, gaps = [], {}
            for item_id, row in old.items():
                other = new.get(item_id)
                if other is None:
                    differing.append({"item_id": item_id, "field": "(missing)"})
                    continue
                for field in SAME[task]:
                    if row.get(field) != other.get(field):
                        differing.append({"item_id": item_id, "field": field, "before": row.get(field),
                                          "after": other.get(field)})
                for field in CLOSE[task]:
                    if field in row:
                        gaps[field] = max(gaps.get(field, 0.0), _close(row[field], other[field]))
            report[f"{task}/{arm}"] = {"rows": len(old), "rows_after": len(new), "differing": differing,
                                       "max_abs_diff": {k: float(f"{v:.3g}") for k, v in gaps.items()}}
    return report


def compare_metrics(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for section in ("metrics", "differences"):
        for key, metrics in before[section].items():
            for metric, value in metrics.items():
                other = after[section].get(key, {}).get(metric)
                gap = None if other is None else max(abs(value[f] - other[f]) for f in ("value", "low", "high")
                                                     if value[f] == value[f] and other[f] == other[f])
                if gap is None or gap > 0:
                    out.append({"section": section, "key": key, "metric": metric, "before": value, "after": other,
                                "max_abs_diff": gap})
    return out


def _markdown(result: dict[str, Any]) -> str:
    from benchmarks._common import describe_machine

    m = result["machine"]
    rounds = result["rounds"]
    keys = [k for k in rounds[0]["before"]["timings"] if k.startswith(("arm.", "items", "retrieval", "load."))]

    def seconds(label: str, key: str) -> str:
        return " / ".join(str(r[label]["timings"].get(key, "-")) for r in rounds)

    lines = [
        "# Evaluate step: per-arm seconds, baseline commit vs this checkout, same items and models",
        "",
        f"{m['date_utc']}; {describe_machine(m)}; torch threads {rounds[0]['after']['threads']}. "
        + ("**The machine was shared with other work while this ran**: compare the two columns (run alternately, "
           "round by round), not the absolute seconds with other results. " if result["shared_machine"] else "")
        + f"Workdir of a finished default run; sets: {', '.join(result['sets']) or 'none'}; items "
        + ("all" if result["limits"] == {"probes": None, "qa": None} else json.dumps(result["limits"])) + ".",
        "",
        f"Baseline: `{result['baseline']}`; after: this checkout (`{result['commit']}`). Rounds: {len(rounds)} "
        "(seconds per round, separated by /). Attention kernel per model: before "
        f"{rounds[0]['before']['attention']}, after {rounds[0]['after']['attention']}.",
        "",
        "| timing | before s | after s | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key in keys:
        b = [r["before"]["timings"].get(key) for r in rounds]
        a = [r["after"]["timings"].get(key) for r in rounds]
        ratio = (f"{sum(x for x in a if x) / sum(x for x in b if x):.2f}"
                 if all(b) and all(a) and sum(b) > 0 else "-")
        lines.append(f"| {key} | {seconds('before', key)} | {seconds('after', key)} | {ratio} |")
    lines += ["", "## Rows (last round): what differs between before and after", "",
              "| task/arm | rows | rows differing in exact fields | largest float difference |",
              "| --- | ---: | ---: | --- |"]
    for key, value in result["rows"].items():
        gaps = ", ".join(f"{k} {v:g}" for k, v in value["max_abs_diff"].items())
        lines.append(f"| {key} | {value['rows']} | {len(value['differing'])} | {gaps} |")
    examples = [dict(d, task=k) for k, v in result["rows"].items() for d in v["differing"]][:20]
    if examples:
        lines += ["", "Differing rows:", ""]
        lines += [f"- {e['task']} {e['item_id']} {e['field']}: {json.dumps(e.get('before'), ensure_ascii=False)} -> "
                  f"{json.dumps(e.get('after'), ensure_ascii=False)}" for e in examples]
    changed = result["metrics"]
    lines += ["", f"## Metrics: {len(changed)} of summary.json's values or intervals differ", ""]
    if changed:
        lines += ["| section | arm / pair | metric | before | after |", "| --- | --- | --- | --- | --- |"]
        for c in changed:
            after = c["after"]
            lines.append(f"| {c['section']} | {c['key']} | {c['metric']} | {c['before']['value']:.6g} "
                         f"[{c['before']['low']:.4g}, {c['before']['high']:.4g}] | "
                         + (f"{after['value']:.6g} [{after['low']:.4g}, {after['high']:.4g}] |" if after else "- |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="workdir of a finished default run (read only)")
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value config override")
    parser.add_argument("--float32", action="store_true", help="turn bf16 autocast off (a CPU without native bf16)")
    parser.add_argument("--baseline", default="HEAD", help="git ref whose ptwiki_llm is 'before'")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--probes", type=int, default=None, help="only the first N probes (a quick look)")
    parser.add_argument("--qa", type=int, default=None, help="only the first N QA questions (a quick look)")
    parser.add_argument("--arms", nargs="*", help="arms to run (default: evaluation.arms)")
    parser.add_argument("--shared-machine", action="store_true", help="other work ran on the machine meanwhile")
    parser.add_argument("--name", default="evaluate_arms", help="results file name")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.float32:
        args.sets = FLOAT32_PATH + args.sets
    if args.worker:
        worker(args)
        return

    from benchmarks._common import benchmark_machine, write_results

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    baseline = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.baseline], capture_output=True,
                              text=True, check=True).stdout.strip()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="evaluate-arms-") as tmp:
        code = _extract(args.baseline, Path(tmp))
        for number in range(args.rounds):
            order = [("before", code), ("after", None)] if number % 2 == 0 else [("after", None), ("before", code)]
            done = {}
            for label, where in order:
                done[label] = _run_worker(args, where, Path(tmp) / f"{label}-{number}.json")
                print(f"round {number + 1} {label}: {json.dumps(done[label]['timings'])}", flush=True)
            rounds.append(done)
    last = rounds[-1]
    result = {
        "benchmark": "evaluate_arms",
        "machine": benchmark_machine("torch", "transformers"),
        "shared_machine": args.shared_machine,
        "workdir": str(args.workdir), "config": args.config, "sets": args.sets,
        "limits": {"probes": args.probes, "qa": args.qa},
        "baseline": f"{args.baseline} ({baseline})", "commit": commit,
        "rounds": [{label: {k: r[label][k] for k in ("timings", "wall_s", "threads", "attention")} for label in r}
                   for r in rounds],
        "rows": compare_rows(last["before"]["rows"], last["after"]["rows"]),
        "metrics": compare_metrics(last["before"], last["after"]),
    }
    write_results(args.name, result, _markdown(result))


if __name__ == "__main__":
    main()
