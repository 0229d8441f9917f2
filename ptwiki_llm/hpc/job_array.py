"""A step's work scaled out over a SLURM job array, ahead of the step's own job (ingest and index).

For a step whose job sets ``array_tasks`` > 1 (``hpc.steps.ingest.array_tasks``, ``hpc.steps.index.array_tasks``),
the orchestrator first submits ``<prefix>-<step>-tasks-<run>`` with ``--array=0-<n-1>``, rendered like the step's
own job (image, partition, account, CPUs, GPUs and memory per task) and after the same upstream jobs. Task ``t``
runs ``python -m ptwiki_llm.hpc.job_array <spec>``. The step's job waits for the whole array (``afterok``):

- ingest: task ``t`` cleans its share of the input (every ``n``-th record, ``ptwiki_llm.data.ingest_tasks``)
  into ``<run folder>/ingest-tasks/``; the ingest step gets ``PTWIKI_INGEST_TASKS_DIR`` and merges the tasks'
  files in input order into the shards a single job would have written (same ``dataset_sha256``);
- index: task ``t`` embeds the passages of its shard of the validated corpus into a part file under
  ``rag.store.parts_dir`` (``ptwiki_llm.rag.index_parts``); the index step gets ``PTWIKI_INDEX_TASKS`` (this
  spec) and writes the parts into the store as a single index would have. The tasks find the corpus through
  the ingest and validate steps' config, so the array needs those steps in the pipeline.

The array is one more job of the run (``<step>-tasks``): ``status`` shows it, a failed task fails the run
and cancels the step, ``cancel`` ends it. Its environment file holds no secrets (the tasks talk to neither
ZenML, MLflow nor the vector store) and is shared by the tasks.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ptwiki_llm.hpc.jobscript import JobSpec, job_name, render_job_script, submit_command, write_env_file
from ptwiki_llm.hpc.slurm import SlurmClient

ARRAY_STEPS = ("ingest", "index")
# what a task needs from the step's environment; the rest (store credentials, tokens) stays out
_TASK_ENV_PREFIXES = ("PTWIKI_", "HF_", "TRANSFORMERS_", "OMP_", "PYTHON", "ZENML_ANALYTICS", "MLFLOW_DISABLE",
                      "DO_NOT_TRACK", "APPTAINER")
_TASK_ENV_SECRETS = ("TOKEN", "PASSWORD", "API_KEY", "SECRET")


def task_environment(environment: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in environment.items()
            if key.startswith(_TASK_ENV_PREFIXES) and not any(word in key for word in _TASK_ENV_SECRETS)}


def failed_task_log(log: str) -> str:
    """The log to quote for a failed job: for an array (``%a`` in ``log``), that of the first task whose log
    does not end with exit code 0 (its script failed, or the task was killed); else ``log`` itself."""
    from ptwiki_llm.hpc.detached import state_from_log

    pattern = Path(log)
    if "%a" not in pattern.name:
        return log
    tasks = sorted(pattern.parent.glob(pattern.name.replace("%a", "*")),
                   key=lambda path: (len(path.name), path.name))  # task 10 after task 9
    for path in tasks:
        end = state_from_log(path)
        if end is None or end[1] != 0:
            return str(path)
    return log


def tasks_dir(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / f"{step}-tasks"


def array_spec(base: JobSpec, tasks: int, spec_file: Path, run_dir: Path, prefix: str) -> JobSpec:
    """The step's job script turned into the array's: the task command, ``--array``, one log per task."""
    role = f"{base.step}-tasks"
    job = base.job.model_copy(update={
        "requeue": False, "array_tasks": 1,
        "extra_sbatch_args": [*base.job.extra_sbatch_args, f"--array=0-{tasks - 1}"],
    })
    return replace(
        base, step=role, name=job_name(prefix, role, base.run_id), job=job,
        command=(base.command[0], "-m", "ptwiki_llm.hpc.job_array", str(spec_file)),
        script_path=run_dir / f"{role}.sbatch", log_path=run_dir / f"{role}-%a.log", env_path=run_dir / f"{role}.env",
        max_requeues=0, header=(f"the `{base.step}` step's work as {tasks} array tasks (ptwiki_llm.hpc.job_array)",),
    )


def submit_tasks(client: SlurmClient, base: JobSpec, environment: dict[str, str], parameters: Mapping[str, Any],
                 run_dir: Path, after_ok: Sequence[str], prefix: str,
                 pipeline_parameters: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, JobSpec, list[str]]:
    """Submit the array for ``base``'s step and point the step at its outputs (``TASKS_DIR_ENV`` for ingest,
    ``INDEX_TASKS_ENV`` for index). ``pipeline_parameters``: every step's parameters by name (index's tasks
    find the corpus through the ingest and validate steps' config). Returns (job id, spec, command)."""
    from ptwiki_llm.data.ingest import TASKS_DIR_ENV
    from ptwiki_llm.stages import INDEX_TASKS_ENV

    if base.step not in ARRAY_STEPS:
        raise ValueError(f"hpc.steps.{base.step}.array_tasks: only {', '.join(ARRAY_STEPS)} can run as a job array")
    tasks = base.job.array_tasks
    spec_file = run_dir / f"{base.step}-tasks.json"
    spec = array_spec(base, tasks, spec_file, run_dir, prefix)
    task_spec: dict[str, Any] = {"step": base.step, "tasks": tasks, "log": str(spec.log_path)}
    if base.step == "index":
        task_spec |= {"config": index_task_config(pipeline_parameters or {}),
                      "max_articles": parameters.get("max_articles")}
        environment[INDEX_TASKS_ENV] = str(spec_file)
    else:
        folder = tasks_dir(run_dir, base.step)
        folder.mkdir(parents=True, exist_ok=True)
        task_spec |= {"tasks_dir": str(folder), "config": parameters["config"]}
        environment[TASKS_DIR_ENV] = str(folder)
    spec_file.write_text(json.dumps(task_spec, indent=2), encoding="utf-8")
    write_env_file(spec.env_path, task_environment(environment))
    spec.script_path.write_text(render_job_script(spec), encoding="utf-8")
    spec.script_path.chmod(0o700)
    command = submit_command(spec.script_path, after_ok)
    job_id = client.submit(command)
    return job_id, spec, command


def index_task_config(pipeline_parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The config an index task reads: the index step's slice, with the ingest and validate steps' data sections
    (where the corpus it indexes lies). Their slices agree on the common keys (one run config)."""
    missing = [step for step in ("ingest", "validate", "index") if "config" not in pipeline_parameters.get(step, {})]
    if missing:
        raise ValueError(f"hpc.steps.index.array_tasks: the index array needs the steps {missing} in the pipeline "
                         "(its tasks read the corpus ingest and validate wrote)")
    merged = copy.deepcopy(dict(pipeline_parameters["index"]["config"]))
    for step in ("ingest", "validate"):
        data = pipeline_parameters[step]["config"].get("data", {})
        merged.setdefault("data", {}).update(copy.deepcopy(data))
    return merged


def run_ingest_task(spec: Mapping[str, Any], task: int) -> dict[str, Any]:
    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.config_slice import config_from_stage
    from ptwiki_llm.data.ingest_tasks import run_task
    from ptwiki_llm.data.sources.base import ConvertOptions

    config = config_from_stage(dict(spec["config"]))
    ingest = config.data.ingest
    # the options ingest_stage builds: the merge refuses task outputs made with others
    options = ConvertOptions(wiki_base_url=config.data.wiki_base_url, max_article_bytes=ingest.max_article_bytes,
                             min_text_chars=ingest.min_text_chars)
    return run_task(resolve_data_source(config), Path(spec["tasks_dir"]), options, ingest, config.data.max_articles,
                    task, int(spec["tasks"]))


def run_index_task(spec: Mapping[str, Any], task: int) -> dict[str, Any]:
    from ptwiki_llm.config_slice import config_from_stage
    from ptwiki_llm.stages import index_task

    return index_task(config_from_stage(dict(spec["config"])), task, int(spec["tasks"]), spec.get("max_articles"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or "SLURM_ARRAY_TASK_ID" not in os.environ:
        print("usage (inside a SLURM array task): python -m ptwiki_llm.hpc.job_array <spec.json>", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    task = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if spec["step"] == "index":
        record = run_index_task(spec, task)
        done = "reused its part" if record["reused"] else f"embedded {record['chunks']} passages"
        print(f"index task {task} of {record['tasks']}: {done} of {record['articles']} articles into "
              f"{record['file']} (sha256 {record['sha256'][:12]})", flush=True)
        return 0
    record = run_ingest_task(spec, task)
    print(f"{spec['step']} task {record['task']} of {record['tasks']}: {json.dumps(record['counts'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
