"""Detached runs: the step jobs run on after ``ptwiki-llm run --detach`` returns; follower jobs close the run.

The SLURM orchestrator submits a run detached when the pipeline's ``extra`` holds ``DETACH_EXTRA`` (the
runner puts it there for ``--detach``) or when its component is not ``synchronous``. The step jobs are
those of an attached run; two follower jobs take the driver's place:

- ``finish`` (``--dependency=afterany:<every step job>``) runs once every step job has ended, however it
  ended, reads their states from SLURM and closes the run: the MLflow parent run FINISHED, FAILED or
  KILLED (never at submit time), the ZenML run (and the steps SLURM killed before they could tell ZenML)
  FAILED or STOPPED, the vector store's state recorded for index's cache key. ``ptwiki-llm status`` does
  the same when it sees every step job ended and nobody has closed the run (the finish job lost,
  cancelled, or still queued); ``finished.json`` in the run folder says how it ended and who closed it.
- ``reap`` (``fail_fast`` and ``stop_on_failure``; ``--dependency=afternotok:<a>?afternotok:<b>...``)
  starts when a step job fails and cancels what the execution mode ends, as the attached driver does
  (``orchestrator.jobs_to_cancel``: fail_fast every unfinished job, stop_on_failure the jobs that have not
  started); when every step succeeds SLURM cancels it (``--kill-on-invalid-dep``). It is a job like any
  other: on a full partition a queued sibling may start before it does.

``finish`` runs ``python -m ptwiki_llm.hpc.detached finish <run folder>`` from a job script rendered like a
CPU step's (same environment file, image, partition and account) with 1 CPU, 2 GB and 20 minutes. Inside
an image, where squeue and sacct are not, it reads how each job ended from the last line the job script
wrote to the job's log. ``reap`` is a few lines of bash on the host (scancel only), no Python, no image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptwiki_llm.hpc.jobscript import (
    LOG_PREFIX,
    JobSpec,
    job_name,
    render_job_script,
    sbatch_directives,
    write_env_file,
)
from ptwiki_llm.hpc.slurm import JobInfo, SlurmClient, SlurmError

DETACH_EXTRA = "ptwiki_detached"  # pipeline ``extra``: detach_extra(...) of a detached run
METADATA_FOLLOWERS = "slurm_follower_job_ids"
RECORD = "jobs.json"
FINISHED = "finished.json"
CANCEL_MARK = "cancel.json"
REAPED = "reap.json"
FOLLOWER_JOB = {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 1, "mem": "2G", "time": "00:20:00", "gpus": 0,
                "array_tasks": 1,
                "gpu_type": None, "gres": None, "gpu_memory": None, "requeue": False}
REAPED_MODES = ("fail_fast", "stop_on_failure")
ZENML_CLOSE_ATTEMPTS = 3  # a cancelled step publishing its own end races the close
LOST = "LOST"  # a job SLURM no longer knows (neither squeue nor sacct), past the wait for it to reappear
_EXIT_LINE = re.compile(re.escape(LOG_PREFIX) + r" step \S+: (exit code (\d+)|requeueing job)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, value: Any) -> None:
    """Written whole or not at all: readers (status, the follower jobs) never see half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_record(run_dir: Path) -> dict[str, Any]:
    record = read_json(Path(run_dir) / RECORD)
    if record is None:
        raise FileNotFoundError(f"{Path(run_dir) / RECORD} does not exist: not the folder of a SLURM run")
    return record


def finished(run_dir: Path) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / FINISHED)


def detach_extra(config: Any, index_state: Any = None, registry_state: Any = None) -> dict[str, Any]:
    """What the follower jobs need to close the run: the config (service URLs stripped: they come back from
    the job's environment) and, when the run indexes or evaluates, the keys index and evaluate ran under."""
    from ptwiki_llm.cache_keys import strip_locations

    return {"config": strip_locations(config.to_dict()), "index_state": index_state,
            "registry_state": registry_state}


def submitted_run_dir(config: Any, run_id: str) -> Path | None:
    """The folder of a run the SLURM orchestrator submitted detached; None when it submitted nothing."""
    run_dir = config.expand(config.hpc.jobs_dir) / run_id
    record = read_json(run_dir / RECORD)
    return run_dir if record and record.get("detached") and record.get("followers") else None


def hand_over_parent(config: Any, parent_run_id: str | None, run_dir: Path) -> None:
    """The MLflow parent's owner becomes the finish job: stale-run detection leaves the parent alone while
    that job is queued or running (the submitting process exits at once)."""
    if parent_run_id is None:
        return
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking

    finish = read_record(run_dir)["followers"]["finish"]["job_id"]
    tracking.setup(config)
    MlflowClient().set_tag(parent_run_id, tracking.OWNER_TAG, json.dumps({"slurm_job_id": finish}))


# --- submission (the orchestrator) --------------------------------------------------------------


def _base_spec(specs: Mapping[str, tuple[JobSpec, dict[str, str]]]) -> tuple[JobSpec, dict[str, str]]:
    """The job script of a CPU step (its image, partition and environment): the followers' template."""
    for spec, environment in specs.values():
        if spec.job.gpus == 0 and not spec.job.gres:
            return spec, environment
    return next(iter(specs.values()))


def follower_spec(base: JobSpec, role: str, run_dir: Path, prefix: str) -> JobSpec:
    python = base.command[0]
    return replace(
        base, step=role, name=job_name(prefix, role, base.run_id), job=base.job.model_copy(update=FOLLOWER_JOB),
        command=(python, "-m", "ptwiki_llm.hpc.detached", role, str(run_dir)),
        script_path=run_dir / f"{role}.sbatch", log_path=run_dir / f"{role}.log", env_path=run_dir / f"{role}.env",
        image=replace(base.image, nv=False) if base.image else None, max_requeues=0,
        header=(f"follower job `{role}` of a detached run (ptwiki_llm.hpc.detached)",),
    )


def follower_commands(record: Mapping[str, Any], scripts: Mapping[str, Path]) -> dict[str, list[str]]:
    """The sbatch command of each follower: finish after every step job; reap after the first failure."""
    ids = [job["job_id"] for job in record["jobs"]]
    commands = {"finish": ["sbatch", "--parsable", f"--dependency=afterany:{':'.join(ids)}", str(scripts["finish"])]}
    if record.get("execution_mode") in REAPED_MODES:
        commands["reap"] = ["sbatch", "--parsable", "--dependency=" + "?".join(f"afternotok:{i}" for i in ids),
                            "--kill-on-invalid-dep=yes", str(scripts["reap"])]
    return commands


def reaper_script(record: Mapping[str, Any], job: Any, name: str, log: Path, run_dir: Path) -> str:
    """The reaper: cancel what the execution mode ends (bash and scancel only: it runs on the host)."""
    ids = " ".join(str(j["job_id"]) for j in record["jobs"])
    mode = record["execution_mode"]
    pending_only = "--state=PENDING " if mode == "stop_on_failure" else ""
    marker = shlex.quote(str(run_dir / REAPED))
    return "\n".join([
        "#!/bin/bash",
        f"# ptwiki-llm: the reaper of detached run {record['run_id']} ({mode}): a step job failed.",
        *(f"#SBATCH {directive}" for directive in sbatch_directives(job, name, log)),
        "set -u",
        f'echo "{LOG_PREFIX} reap ({mode}): a step job failed; cancelling '
        f'{"the jobs that have not started" if pending_only else "every unfinished job"} of {ids}"',
        f"scancel {pending_only}{ids}",
        f"printf '{{\"mode\": \"{mode}\", \"job\": \"%s\", \"at\": \"%s\"}}\\n' "
        f'"${{SLURM_JOB_ID:-?}}" "$(date -Iseconds)" > {marker}',
        "",
    ])


def submit_followers(
    client: SlurmClient, run_dir: Path, record: dict[str, Any],
    specs: Mapping[str, tuple[JobSpec, dict[str, str]]], prefix: str,
) -> dict[str, Any]:
    """Write the run's record, then submit its follower jobs; returns the record with them."""
    base, environment = _base_spec(specs)
    finish = follower_spec(base, "finish", run_dir, prefix)
    write_json(run_dir / RECORD, record)  # before the followers exist: they read it
    write_env_file(finish.env_path, environment)
    finish.script_path.write_text(render_job_script(finish), encoding="utf-8")
    scripts = {"finish": finish.script_path}
    logs = {"finish": finish.log_path}
    if record.get("execution_mode") in REAPED_MODES:
        scripts["reap"], logs["reap"] = run_dir / "reap.sbatch", run_dir / "reap.log"
        scripts["reap"].write_text(reaper_script(record, finish.job, job_name(prefix, "reap", base.run_id),
                                                 logs["reap"], run_dir), encoding="utf-8")
    followers: dict[str, dict[str, Any]] = {}
    for role, command in follower_commands(record, scripts).items():
        scripts[role].chmod(0o700)
        try:
            job_id = client.submit(command)
        except BaseException:
            client.cancel(f["job_id"] for f in followers.values())
            raise
        followers[role] = {"role": role, "job_id": job_id, "command": command, "script": str(scripts[role]),
                           "log": str(logs[role])}
    record = {**record, "followers": followers}
    write_json(run_dir / RECORD, record)
    return record


# --- closing a run (the finish job, or status) --------------------------------------------------


def outcome(step_states: Mapping[str, str], cancelled_by_user: bool) -> str:
    """MLflow's end status of the run: FINISHED when every step job completed; KILLED when the user cancelled
    (or only cancellations ended it); FAILED when a job failed, timed out, ran out of memory or was lost."""
    if all(state == "COMPLETED" for state in step_states.values()):
        return "FINISHED"
    if cancelled_by_user or all(state in ("COMPLETED", "CANCELLED") for state in step_states.values()):
        return "KILLED"
    return "FAILED"


def _run_config(record: Mapping[str, Any]) -> Any:
    from ptwiki_llm.cache_keys import restore_locations
    from ptwiki_llm.config import Config

    spec = record.get("finish") or {}
    if not spec.get("config"):
        return None
    return Config.model_validate(restore_locations(json.loads(json.dumps(spec["config"]))))


def close_zenml(run_id: str, step_states: Mapping[str, str], status: str, reason: str) -> str:
    """Mark the ZenML run (and its unfinished steps whose jobs did not complete) as the jobs ended.

    Call after ``prepare_zenml`` (or inside a job, whose environment names the store). Returns the run's status.
    """
    from zenml.client import Client
    from zenml.constants import STR_FIELD_MAX_LENGTH
    from zenml.enums import ExecutionStatus
    from zenml.orchestrators.publish_utils import (
        publish_failed_step_run,
        publish_pipeline_run_status_update,
        publish_stopped_step_run,
    )

    client = Client()
    run = client.get_pipeline_run(run_id)
    if status == "FINISHED" or ExecutionStatus(run.status).is_finished:
        return str(run.status)
    for step, state in step_states.items():
        step_run = run.steps.get(step)
        if step_run is not None and state != "COMPLETED" and not ExecutionStatus(step_run.status).is_finished:
            (publish_stopped_step_run if status == "KILLED" else publish_failed_step_run)(step_run.id)
    run = client.get_pipeline_run(run_id)
    if not ExecutionStatus(run.status).is_finished:
        # ZenML derives a static pipeline's status from its steps: STOPPED asked directly, with steps that never
        # started, comes back RUNNING; STOPPING becomes STOPPED once every step that exists has finished
        target = ExecutionStatus.STOPPING if status == "KILLED" else ExecutionStatus.FAILED
        # ZenML wants the UUID (a string fails in SQLAlchemy) and a reason of at most 255 characters
        publish_pipeline_run_status_update(run.id, target, status_reason=reason[:STR_FIELD_MAX_LENGTH])
    return str(client.get_pipeline_run(run_id).status)


def finish_run(run_dir: Path, step_states: Mapping[str, str], by: str, config: Any = None) -> dict[str, Any]:
    """Close a run whose step jobs have all ended (idempotent: a closed run keeps how it was closed)."""
    run_dir = Path(run_dir)
    done = finished(run_dir)
    if done is not None:
        return done
    record = read_record(run_dir)
    status = outcome(step_states, (run_dir / CANCEL_MARK).is_file())
    jobs = {job["step"]: job["job_id"] for job in record["jobs"]}
    reason = "; ".join(f"step {step}: SLURM job {jobs[step]} {state}"
                       for step, state in step_states.items() if state != "COMPLETED")
    notes: list[str] = []
    zenml_status = None
    # a cancelled step's own process may publish its end while this runs: read the run again and retry
    for attempt in range(ZENML_CLOSE_ATTEMPTS):
        try:
            zenml_status = close_zenml(record["run_id"], step_states, status, reason or "every job completed")
            break
        except Exception as exc:  # the run's end is recorded whatever ZenML answers
            if attempt + 1 == ZENML_CLOSE_ATTEMPTS:
                notes.append(f"ZenML run not updated: {type(exc).__name__}: {exc}")
            else:
                time.sleep(2.0)
    config = config if config is not None else _run_config(record)
    if config is not None:
        from ptwiki_llm import tracking

        try:
            if tracking.store_exists(config):
                tracking.finish_parent(config, record["run_id"], status)
        except Exception as exc:
            notes.append(f"MLflow parent run not updated: {exc}")
        from ptwiki_llm import cache_keys

        # as the attached runner does: the outside state a completed step left, with the key it ran under, so
        # an unchanged next run is served from the cache
        finish = record.get("finish") or {}
        for step, key_name, record_state in (("index", "index_state", cache_keys.record_index_state),
                                             ("evaluate", "registry_state", cache_keys.record_registry_state)):
            if finish.get(key_name) is not None and step_states.get(step) == "COMPLETED":
                record_state(config, finish[key_name])
    done = {"status": status, "zenml_status": zenml_status, "steps": dict(step_states), "reason": reason,
            "closed_by": by, "closed_at": now_iso(), "notes": notes}
    write_json(run_dir / FINISHED, done)
    return done


def step_states(client: SlurmClient, record: Mapping[str, Any]) -> dict[str, JobInfo]:
    """Each step's job as SLURM reports it (steps SLURM does not know are absent)."""
    infos = client.states([job["job_id"] for job in record["jobs"]])
    return {job["step"]: infos[job["job_id"]] for job in record["jobs"] if job["job_id"] in infos}


def state_from_log(log: Path) -> tuple[str, int] | None:
    """The end the job script wrote into the log: (COMPLETED|FAILED, exit code); None when it wrote none."""
    if not log.is_file():
        return None
    last = None
    with log.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _EXIT_LINE.search(line)
            if match:
                last = match
    if last is None or last.group(2) is None:  # no end written, or requeued after it
        return None
    code = int(last.group(2))
    return ("COMPLETED" if code == 0 else "FAILED"), code


def ended_state_from_logs(log: str) -> str:
    """How a job that has ended ended, from its log(s) alone (``%a``: one per array task): COMPLETED when each
    says exit code 0; CANCELLED when there is none (it never started); else FAILED (a non-zero exit, or the
    job was killed before its script's last line)."""
    pattern = Path(log)
    paths = sorted(pattern.parent.glob(pattern.name.replace("%a", "*"))) if "%a" in pattern.name else [pattern]
    found = [path for path in paths if path.is_file()]
    if not found:
        return "CANCELLED"
    ends = [state_from_log(path) for path in found]
    return "COMPLETED" if all(end is not None and end[0] == "COMPLETED" for end in ends) else "FAILED"


def _finish_job(run_dir: Path) -> int:
    record = read_record(run_dir)
    if SlurmClient.available():
        client = SlurmClient()
        infos = step_states(client, record)
        states = {job["step"]: infos[job["step"]].state if job["step"] in infos else ended_state_from_logs(job["log"])
                  for job in record["jobs"]}
        reaper = (record.get("followers") or {}).get("reap")
        if reaper:  # every step ended: a reaper still waiting has nothing left to do
            client.cancel([reaper["job_id"]], pending_only=True)
    else:  # inside an image: the job scripts' last lines say how the jobs (which all ended) ended
        states = {job["step"]: ended_state_from_logs(job["log"]) for job in record["jobs"]}
    done = finish_run(run_dir, states, by=f"finish job {os.environ.get('SLURM_JOB_ID', '?')}")
    print(f"run {record.get('run_name') or record['run_id']}: {done['status']} "
          f"(closed by {done['closed_by']}); steps: {json.dumps(done['steps'])}", flush=True)
    for note in done["notes"]:
        print(f"warning: {note}", flush=True)
    return 0


def jobs_alive(job_ids: Sequence[str]) -> bool | None:
    """Whether any of these jobs is still queued or running; None when SLURM cannot be asked or knows none."""
    if not job_ids or not SlurmClient.available():
        return None
    try:
        infos = SlurmClient(timeout=30).states(list(job_ids))
    except SlurmError:
        return None
    if not infos:
        return None
    return any(not info.finished for info in infos.values())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "finish":
        print("usage: python -m ptwiki_llm.hpc.detached finish <run folder>", file=sys.stderr)
        return 2
    return _finish_job(Path(args[1]))


if __name__ == "__main__":
    raise SystemExit(main())
