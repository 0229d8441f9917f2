"""Detached runs without a cluster: follower dependencies, how a run ends, lost jobs, finding runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptwiki_llm.config import SlurmJobConfig
from ptwiki_llm.errors import PrerequisiteMissingError
from ptwiki_llm.hpc import detached, run_view
from ptwiki_llm.hpc.detached import state_from_log
from ptwiki_llm.hpc.jobscript import JobSpec, render_job_script
from ptwiki_llm.hpc.run_view import RunNotFoundError, find_run, view
from ptwiki_llm.hpc.slurm import JobInfo


class FakeSlurm:
    def __init__(self, states: dict[str, tuple]) -> None:
        self.answers = states
        self.cancelled: list[list[str]] = []

    def states(self, job_ids):
        return {j: JobInfo(j, *self.answers[j]) for j in job_ids if j in self.answers}

    def elapsed(self, job_ids):
        return {j: "00:00:07" for j in job_ids if j in self.answers}

    def cancel(self, job_ids, pending_only=False):
        self.cancelled.append(sorted(job_ids))


def _run_dir(tmp_path: Path, name: str = "data_pipeline-2026_11_29-05_00_00-abcd1234", mode: str = "stop_on_failure",
             run_id: str = "0f0e0d0c-0000-4000-8000-000000000001") -> Path:
    run_dir = tmp_path / run_id
    run_dir.mkdir()
    jobs = [{"step": step, "job_id": job_id, "log": str(run_dir / f"{step}.log")}
            for step, job_id in (("ingest", "101"), ("validate", "102"))]
    followers = {"finish": {"role": "finish", "job_id": "103", "log": str(run_dir / "finish.log")}}
    detached.write_json(run_dir / detached.RECORD, {"run_id": run_id, "run_name": name, "pipeline": "data_pipeline",
                                                    "execution_mode": mode, "detached": True, "jobs": jobs,
                                                    "followers": followers})
    return run_dir


def test_outcome_of_a_run_by_its_jobs():
    assert detached.outcome({"a": "COMPLETED", "b": "COMPLETED"}, False) == "FINISHED"
    assert detached.outcome({"a": "COMPLETED", "b": "FAILED"}, False) == "FAILED"
    assert detached.outcome({"a": "TIMEOUT", "b": "CANCELLED"}, False) == "FAILED"
    assert detached.outcome({"a": "COMPLETED", "b": detached.LOST}, False) == "FAILED"
    assert detached.outcome({"a": "COMPLETED", "b": "CANCELLED"}, False) == "KILLED"
    assert detached.outcome({"a": "FAILED", "b": "CANCELLED"}, True) == "KILLED"  # the user cancelled the run


def test_finish_waits_for_every_step_and_reap_for_any_failure(tmp_path):
    record = {"execution_mode": "fail_fast", "jobs": [{"job_id": "7"}, {"job_id": "8"}, {"job_id": "9"}]}
    commands = detached.follower_commands(record, {"finish": tmp_path / "f.sbatch", "reap": tmp_path / "r.sbatch"})
    assert commands["finish"][:3] == ["sbatch", "--parsable", "--dependency=afterany:7:8:9"]
    assert "--dependency=afternotok:7?afternotok:8?afternotok:9" in commands["reap"]
    assert "--kill-on-invalid-dep=yes" in commands["reap"]
    record["execution_mode"] = "continue_on_failure"  # nothing to end on a failure: no reaper
    assert set(detached.follower_commands(record, {"finish": tmp_path / "f.sbatch"})) == {"finish"}


def test_follower_job_is_a_small_cpu_job_of_the_step_template(tmp_path):
    job = SlurmJobConfig(partition="gpu", account="proj", gpus=4, mem="200G", cpus_per_task=32, time="24:00:00",
                         requeue=True)
    base = JobSpec(step="train", name="ptwiki-train-abcd1234", run_id="abcd1234-0000", job=job,
                   command=("/venv/bin/python", "-m", "zenml.entrypoints.entrypoint"), workdir=str(tmp_path),
                   script_path=tmp_path / "train.sbatch", log_path=tmp_path / "train.log",
                   env_path=tmp_path / "train.env", max_requeues=3)
    spec = detached.follower_spec(base, "finish", tmp_path, "ptwiki")
    script = render_job_script(spec)
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --account=proj" in script
    assert "#SBATCH --mem=2G" in script and "#SBATCH --cpus-per-task=1" in script and "--gres" not in script
    assert "#SBATCH --no-requeue" in script and "scontrol requeue" not in script
    assert f"/venv/bin/python -m ptwiki_llm.hpc.detached finish {tmp_path}" in script
    assert spec.log_path == tmp_path / "finish.log" and spec.name == "ptwiki-finish-abcd1234"


def test_state_from_the_log_a_job_script_wrote(tmp_path):
    log = tmp_path / "x.log"
    assert state_from_log(log) is None
    log.write_text("[ptwiki-slurm] step train: exit code 75\n[ptwiki-slurm] step train: requeueing job 5 (attempt 1)\n")
    assert state_from_log(log) is None  # requeued: it runs again
    log.write_text(log.read_text() + "[ptwiki-slurm] step train: exit code 0\n")
    assert state_from_log(log) == ("COMPLETED", 0)
    log.write_text("[ptwiki-slurm] step ingest: exit code 3\n")
    assert state_from_log(log) == ("FAILED", 3)


def test_a_job_slurm_does_not_know_is_lost_after_the_bound_then_the_run_fails(tmp_path, monkeypatch):
    run_dir = _run_dir(tmp_path)
    slurm = FakeSlurm({"101": ("COMPLETED", "", 0, 0), "103": ("PENDING", "Dependency")})  # 102 unknown
    clock = [1000.0]
    monkeypatch.setattr(run_view.time, "time", lambda: clock[0])
    first = view(run_dir, slurm, lost_after_s=60)
    assert [r.state for r in first.steps] == ["COMPLETED", "UNKNOWN"] and first.status == "RUNNING"
    assert run_view.close_if_ended(first, slurm).closed is None
    clock[0] += 59
    assert view(run_dir, slurm, lost_after_s=60).steps[1].state == "UNKNOWN"
    clock[0] += 1
    later = view(run_dir, slurm, lost_after_s=60)
    assert later.steps[1].state == detached.LOST and "for 60s" in later.steps[1].note and later.ended
    monkeypatch.setattr(detached, "close_zenml", lambda run_id, states, status, reason: "failed")
    assert run_view.close_if_ended(later, slurm).closed is None  # the queued finish job closes it
    closed = run_view.close_if_ended(later, slurm, force=True).closed
    assert closed["status"] == "FAILED" and closed["steps"] == {"ingest": "COMPLETED", "validate": detached.LOST}
    assert "status" in closed["closed_by"] and slurm.cancelled == [["103"]]  # the queued finish job is let go
    assert json.loads((run_dir / detached.FINISHED).read_text())["status"] == "FAILED"
    # closed once: a later close (the finish job) keeps what was written
    assert detached.finish_run(run_dir, {"ingest": "COMPLETED", "validate": "COMPLETED"}, by="x")["status"] == "FAILED"


def test_a_job_slurm_forgot_is_read_from_its_log(tmp_path):
    run_dir = _run_dir(tmp_path)
    Path(run_dir / "validate.log").write_text("[ptwiki-slurm] step validate: exit code 0\n")
    run = view(run_dir, FakeSlurm({"101": ("COMPLETED", "", 0, 0)}))
    assert run.steps[1].state == "COMPLETED" and "from its log" in run.steps[1].note
    assert run.steps[0].elapsed == "00:00:07"


def test_runs_are_found_by_name_id_or_prefix_newest_by_default(tmp_path):
    with pytest.raises(PrerequisiteMissingError, match="no SLURM runs"):
        find_run(tmp_path, None)
    old = _run_dir(tmp_path, "data_pipeline-2026_11_28-old-11111111", run_id="aaaa1111-0000")
    new = _run_dir(tmp_path, "data_pipeline-2026_11_29-new-22222222", run_id="bbbb2222-0000")
    import os

    os.utime(old / detached.RECORD, (1, 1))
    assert find_run(tmp_path, None) == new
    assert find_run(tmp_path, "aaaa1111-0000") == old
    assert find_run(tmp_path, "data_pipeline-2026_11_28") == old
    with pytest.raises(RunNotFoundError, match="names 2 runs"):
        find_run(tmp_path, "data_pipeline")
    with pytest.raises(RunNotFoundError, match="no SLURM run 'zzz'"):
        find_run(tmp_path, "zzz")


def test_a_job_array_stands_for_its_tasks():
    from ptwiki_llm.hpc.slurm import aggregate_arrays, parse_sacct, parse_squeue

    running = parse_squeue("55_0|RUNNING|None\n55_[1-2]|PENDING|Resources\n56|RUNNING|None\n")
    assert aggregate_arrays(running, ["55", "56"])["55"].state == "RUNNING"
    waiting = parse_squeue("55_0|COMPLETED|None\n55_[1-2]|PENDING|Resources\n")
    assert aggregate_arrays(waiting, ["55"])["55"] == JobInfo("55", "PENDING", "Resources")
    done = parse_sacct("55_0|COMPLETED|0:0|None\n55_1|FAILED|3:0|NonZeroExitCode\n55_2|COMPLETED|0:0|None\n")
    assert aggregate_arrays(done, ["55"])["55"] == JobInfo("55", "FAILED", "NonZeroExitCode", 3, 0)
    ok = parse_sacct("55_0|COMPLETED|0:0|None\n55_1|COMPLETED|0:0|None\n")
    assert aggregate_arrays(ok, ["55"])["55"].succeeded


def test_the_ingest_array_is_the_step_job_with_tasks_and_no_secrets(tmp_path):
    from ptwiki_llm.hpc.job_array import array_spec, task_environment

    job = SlurmJobConfig(partition="cpu", cpus_per_task=8, mem="32G", array_tasks=4)
    base = JobSpec(step="ingest", name="ptwiki-ingest-abcd1234", run_id="abcd1234-0000", job=job,
                   command=("/venv/bin/python", "-m", "zenml.entrypoints.entrypoint"), workdir=str(tmp_path),
                   script_path=tmp_path / "ingest.sbatch", log_path=tmp_path / "ingest.log",
                   env_path=tmp_path / "ingest.env")
    script = render_job_script(array_spec(base, 4, tmp_path / "ingest-tasks.json", tmp_path, "ptwiki"))
    assert "#SBATCH --array=0-3" in script and f"#SBATCH --output={tmp_path}/ingest-tasks-%a.log" in script
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=32G" in script
    assert f"-m ptwiki_llm.hpc.job_array {tmp_path}/ingest-tasks.json" in script
    assert "rm -f" not in script  # the tasks that start later still read the env file
    env = task_environment({"PTWIKI_SOURCE_ROOT": "/app", "HF_HUB_OFFLINE": "1", "ZENML_STORE_URL": "https://z",
                            "ZENML_STORE_API_KEY": "k", "MLFLOW_TRACKING_PASSWORD": "p", "PTWIKI_API_TOKEN": "t"})
    assert env == {"PTWIKI_SOURCE_ROOT": "/app", "HF_HUB_OFFLINE": "1"}


def test_cli_refuses_detach_on_a_local_preset_and_unknown_runs_in_one_line(tmp_path):
    from tests.test_cli_errors import cli, error_line, nothing_set_up

    local = str(Path(__file__).resolve().parents[2] / "configs" / "local.yaml")
    refused = error_line(cli("run", "--detach", "-c", local, workdir=tmp_path / "wd"), 2)
    assert "--detach needs a SLURM preset" in refused and nothing_set_up(tmp_path / "wd")
    missing = error_line(cli("logs", "nope", "ingest", "-c", local, workdir=tmp_path / "wd"), 1)
    assert "no SLURM runs in" in missing and "ptwiki-llm run --detach" in missing


def test_the_reaper_is_bash_and_scancel_by_the_execution_mode(tmp_path):
    record = {"run_id": "r1", "execution_mode": "stop_on_failure",
              "jobs": [{"job_id": "7"}, {"job_id": "8"}]}
    job = SlurmJobConfig(partition="cpu", mem="2G")
    script = detached.reaper_script(record, job, "ptwiki-reap-r1", tmp_path / "reap.log", tmp_path)
    assert "scancel --state=PENDING 7 8" in script and "python" not in script
    record["execution_mode"] = "fail_fast"
    script = detached.reaper_script(record, job, "ptwiki-reap-r1", tmp_path / "reap.log", tmp_path)
    assert "\nscancel 7 8\n" in script
    (tmp_path / "reap.sbatch").write_text(script)
    import subprocess

    assert subprocess.run(["bash", "-n", str(tmp_path / "reap.sbatch")]).returncode == 0


def test_how_a_job_ended_from_its_logs_alone(tmp_path):
    assert detached.ended_state_from_logs(str(tmp_path / "never.log")) == "CANCELLED"
    (tmp_path / "ok.log").write_text("[ptwiki-slurm] step ingest: exit code 0\n")
    assert detached.ended_state_from_logs(str(tmp_path / "ok.log")) == "COMPLETED"
    (tmp_path / "killed.log").write_text("[ptwiki-slurm] step train: job 5 attempt 0\n")
    assert detached.ended_state_from_logs(str(tmp_path / "killed.log")) == "FAILED"
    for task, code in ((0, 0), (1, 3)):
        (tmp_path / f"ingest-tasks-{task}.log").write_text(f"[ptwiki-slurm] step ingest-tasks: exit code {code}\n")
    assert detached.ended_state_from_logs(str(tmp_path / "ingest-tasks-%a.log")) == "FAILED"


@pytest.mark.parametrize(("owner_alive", "jobs_alive", "expected"), [
    (False, True, True),  # a detached run: its submitter exited, its jobs run
    (False, False, False),  # every job ended and nobody closed the run
    (False, None, None),  # SLURM cannot be asked: leave the run alone
    (True, False, True),  # the attached driver still works on it
])
def test_a_slurm_run_lives_while_its_jobs_do(monkeypatch, owner_alive, jobs_alive, expected):
    from ptwiki_llm import stale_runs

    monkeypatch.setattr(stale_runs, "owner_alive", lambda owner: owner_alive)
    monkeypatch.setattr(detached, "jobs_alive", lambda ids: jobs_alive)
    metadata = {"slurm_job_ids": {"ingest": "5"}, detached.METADATA_FOLLOWERS: {"finish": "6"}}
    assert stale_runs._alive({"host": "h", "pid": 1}, metadata) is expected
    assert stale_runs._alive({"host": "h", "pid": 1}, {}) is owner_alive  # no jobs: the owner decides


@pytest.mark.parametrize("evaluate_state", ["COMPLETED", "FAILED"])
def test_the_finish_job_records_the_keys_of_completed_steps_as_an_attached_run_does(tmp_path, monkeypatch,
                                                                                   evaluate_state):
    from ptwiki_llm import cache_keys, tracking
    from ptwiki_llm.config import load_config

    run_dir = _run_dir(tmp_path)
    record = json.loads((run_dir / detached.RECORD).read_text())
    record["jobs"] = [{"step": step, "job_id": job_id, "log": str(run_dir / f"{step}.log")}
                      for step, job_id in (("index", "101"), ("evaluate", "102"))]
    record["finish"] = {"index_state": {"token": "i"}, "registry_state": {"token": "r"}}
    detached.write_json(run_dir / detached.RECORD, record)
    recorded: list[tuple[str, dict]] = []
    monkeypatch.setattr(cache_keys, "record_index_state", lambda config, key: recorded.append(("index", key)))
    monkeypatch.setattr(cache_keys, "record_registry_state", lambda config, key: recorded.append(("registry", key)))
    monkeypatch.setattr(detached, "close_zenml", lambda run_id, states, status, reason: "completed")
    monkeypatch.setattr(tracking, "store_exists", lambda config: False)
    config = load_config(None, {"workdir": str(tmp_path)}, environ={})
    detached.finish_run(run_dir, {"index": "COMPLETED", "evaluate": evaluate_state}, by="test", config=config)
    assert recorded == [("index", {"token": "i"})] + ([("registry", {"token": "r"})]
                                                     if evaluate_state == "COMPLETED" else [])
