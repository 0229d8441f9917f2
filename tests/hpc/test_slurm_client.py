"""Parsing what sbatch/squeue/sacct/scontrol print (samples from Slurm 22.05), and job logs."""

from __future__ import annotations

import pytest

from ptwiki_llm.hpc.logs import LogFollower, tail
from ptwiki_llm.hpc.slurm import (
    JobInfo,
    SlurmError,
    parse_exit_code,
    parse_job_id,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
)


def test_sbatch_parsable_output():
    assert parse_job_id("4242\n") == "4242"
    assert parse_job_id("4242;atena\n") == "4242"
    with pytest.raises(SlurmError):
        parse_job_id("sbatch: error: Batch job submission failed: Invalid partition name specified\n")


def test_squeue_states_and_reasons():
    jobs = parse_squeue("5|COMPLETED|None\n6|PENDING|Dependency\n7|CANCELLED|DependencyNeverSatisfied\n")
    assert jobs["6"] == JobInfo("6", "PENDING", "Dependency")
    assert jobs["5"].succeeded and jobs["5"].finished
    assert jobs["7"].finished and not jobs["7"].succeeded
    assert not jobs["6"].finished


def test_sacct_exit_codes_and_cancelled_by():
    jobs = parse_sacct("1|COMPLETED|0:0|None\n2|FAILED|3:0|NonZeroExitCode\n3|CANCELLED by 0|0:0|None\n"
                       "4|TIMEOUT|0:15|TimeLimit\n5|OUT_OF_MEMORY|0:125|OutOfMemory\n")
    assert (jobs["2"].state, jobs["2"].exit_code, jobs["2"].signal) == ("FAILED", 3, 0)
    assert jobs["3"].state == "CANCELLED"
    assert (jobs["4"].state, jobs["4"].signal) == ("TIMEOUT", 15)
    assert jobs["5"].finished


def test_scontrol_one_line_record():
    line = ("JobId=2 JobName=wrap UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
            "Requeue=1 Restarts=0 BatchFlag=1 ExitCode=3:0 RunTime=00:00:00")
    assert parse_scontrol(line) == JobInfo("2", "FAILED", "NonZeroExitCode", 3, 0)
    assert parse_scontrol("slurm_load_jobs error: Invalid job id specified") is None
    assert parse_exit_code("garbage") == (None, None)


def test_tail_reads_only_the_end(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail(log, 3) == "line 99997\nline 99998\nline 99999"
    assert tail(tmp_path / "missing.log", 3) == ""


def test_follower_emits_whole_lines_once(tmp_path):
    log = tmp_path / "job.log"
    seen: list[str] = []
    follower = LogFollower(seen.append)
    follower.poll("[a#1]", log)  # not there yet
    log.write_text("first\nsec")
    follower.poll("[a#1]", log)
    assert seen == ["[a#1] first"]
    with log.open("a") as handle:
        handle.write("ond\n\nthird")
    follower.poll("[a#1]", log)
    follower.poll("[a#1]", log, final=True)
    assert seen == ["[a#1] first", "[a#1] second", "[a#1] ", "[a#1] third"]
