"""Wall time of the index's embedding as one SLURM job against a 2-task job array, on the local cluster.

The corpus: ``--articles`` articles of the staged sample, ingested and validated in this process with
configs/local-slurm.yaml. Each case submits the index job array through ``job_array.submit_tasks`` (the
orchestrator's code) into a fresh parts folder, so nothing is reused, and waits for it:

- one job: a 1-task array, i.e. the whole corpus embedded by one job (1 CPU, the preset's index job);
- 2-task array: two tasks of 1 CPU each, each embedding its shard.

Then the index step's merge writes the 2-task parts into LanceDB in this process (timed too), and the
collection is compared with the 1-job parts' merge (same ids; largest vector difference).
The wall times are submit to end as SLURM ran them (each task loads the embedder: torch and E5-small).

Results: benchmarks/results/index_array_local.{json,md}.
Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/index_array.py [--articles 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, write_results  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "index_array"


def _config(articles: int, case: str) -> Any:
    from ptwiki_llm.config import load_config

    return load_config(REPO / "configs" / "local-slurm.yaml",
                       {"workdir": str(WORK / "wd"), "data": {"max_articles": articles},
                        "rag": {"embedding": {"device": "cpu"},
                                "store": {"lancedb_uri": str(WORK / case / "lancedb"),
                                          "parts_dir": str(WORK / case / "parts")}}},
                       environ={k: v for k, v in os.environ.items() if k == "PTWIKI_ASSET_PATH"})


def _run_array(config: Any, tasks: int, case: str) -> tuple[float, dict[str, str], Path]:
    from ptwiki_llm.config import SlurmJobConfig
    from ptwiki_llm.config_slice import config_for_stage
    from ptwiki_llm.hpc.job_array import submit_tasks
    from ptwiki_llm.hpc.jobscript import JobSpec
    from ptwiki_llm.hpc.slurm import SlurmClient

    run_dir = WORK / case / "slurm"
    run_dir.mkdir(parents=True)
    job = SlurmJobConfig(partition="debug", time="00:30:00", cpus_per_task=1, mem="3G", array_tasks=tasks)
    base = JobSpec(step="index", name=f"ptwiki-bench-{case}", run_id=case, job=job,
                   command=(sys.executable, "-m", "zenml.entrypoints.entrypoint"), workdir=str(REPO),
                   script_path=run_dir / "index.sbatch", log_path=run_dir / "index.log",
                   env_path=run_dir / "index.env")
    environment = {"PTWIKI_SOURCE_ROOT": str(REPO), "HF_HUB_OFFLINE": "1"}
    parameters = {stage: {"config": config_for_stage(config, stage)} for stage in ("ingest", "validate", "index")}
    client = SlurmClient()
    started = time.perf_counter()
    job_id, _, _ = submit_tasks(client, base, environment, parameters["index"], run_dir, (), "ptwiki-bench",
                                parameters)
    while not (info := client.states([job_id])[job_id]).finished:
        time.sleep(1)
    wall = time.perf_counter() - started
    if not info.succeeded:
        raise SystemExit(f"{case}: array {job_id} ended {info.state}; logs in {run_dir}")
    return wall, environment, run_dir


def _merge(config: Any, validated: Any, environment: dict[str, str]) -> tuple[Any, float]:
    from ptwiki_llm.stages import INDEX_TASKS_ENV, index_stage

    os.environ[INDEX_TASKS_ENV] = environment[INDEX_TASKS_ENV]
    try:
        started = time.perf_counter()
        result = index_stage(config, validated, show_progress=False)
        return result, time.perf_counter() - started
    finally:
        del os.environ[INDEX_TASKS_ENV]


def _vectors(config: Any, collection: str) -> tuple[list[str], Any]:
    import lancedb
    import numpy as np

    rows = lancedb.connect(str(config.expand(config.rag.store.lancedb_uri))).open_table(collection).to_arrow()
    rows = rows.sort_by("id")
    return rows["id"].to_pylist(), np.stack(rows["vector"].to_numpy(zero_copy_only=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=300)
    args = parser.parse_args()
    import numpy as np

    from ptwiki_llm.stages import ingest_stage, validate_stage

    shutil.rmtree(WORK, ignore_errors=True)
    one = _config(args.articles, "one-job")
    validated = validate_stage(one, ingest_stage(one, show_progress=False))
    load_before = os.getloadavg()
    cases: dict[str, Any] = {}
    for case, tasks in (("one-job", 1), ("array-2", 2)):
        config = _config(args.articles, case)
        wall, environment, _ = _run_array(config, tasks, case)
        result, merge_s = _merge(config, validated, environment)
        cases[case] = {"tasks": tasks, "array_wall_s": round(wall, 1), "merge_wall_s": round(merge_s, 1),
                       "passages": result.counts.store_count, "collection": result.collection,
                       "parts": result.array_parts}
        cases[case]["config"] = config
    one_ids, one_vectors = _vectors(cases["one-job"].pop("config"), cases["one-job"]["collection"])
    two_ids, two_vectors = _vectors(cases["array-2"].pop("config"), cases["array-2"]["collection"])
    assert one_ids == two_ids, "the 1-task and 2-task indexes hold other passages"
    difference = float(np.abs(one_vectors - two_vectors).max())
    result = {
        "machine": benchmark_machine("torch", "sentence-transformers", "lancedb"),
        "shared_machine": "2 cores shared with other engineers' tests and jobs: absolute times are inflated",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "articles": args.articles,
        "precision": "preset default (rag.embedding.bf16_autocast auto: bf16 on this CPU)",
        "cases": cases,
        "same_passage_ids": True,
        "max_abs_vector_difference_1_vs_2_tasks": difference,
        "speedup_array_wall": round(cases["one-job"]["array_wall_s"] / cases["array-2"]["array_wall_s"], 2),
    }
    markdown = (
        f"# Index embedding: one SLURM job vs a 2-task job array (local one-node cluster)\n\n"
        f"{args.articles} articles of the staged sample, {cases['one-job']['passages']} passages, E5-small on CPU "
        f"(1 CPU per job/task), `benchmarks/index_array.py`, {result['machine']['date_utc']}. The machine's 2 "
        f"cores were shared with other work (load average {result['load_average_before'][0]} before, "
        f"{result['load_average_after'][0]} after).\n\n"
        f"| case | array wall (submit to end) | merge into LanceDB (this process) |\n|---|---|---|\n"
        f"| one job (1-task array) | {cases['one-job']['array_wall_s']} s | {cases['one-job']['merge_wall_s']} s |\n"
        f"| 2-task array | {cases['array-2']['array_wall_s']} s | {cases['array-2']['merge_wall_s']} s |\n\n"
        f"Same passage ids; largest vector difference between the two {difference:.2e} (bf16 autocast: other "
        f"batches, other rounding). The first merge includes importing torch and sentence-transformers into "
        f"this process.\n"
    )
    write_results("index_array_local", result, markdown)


if __name__ == "__main__":
    main()
