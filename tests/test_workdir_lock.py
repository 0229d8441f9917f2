"""The workdir lock against real processes: a live holder is named, a killed one frees the workdir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptwiki_llm.errors import EXIT_BUSY, WorkdirBusyError
from ptwiki_llm.run_owner import current_owner, owner_alive
from ptwiki_llm.workdir_lock import HOLDER_FILE, WorkdirLock, read_holder

REPO = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from ptwiki_llm.workdir_lock import WorkdirLock
with WorkdirLock(sys.argv[1], "data"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A process that holds the workdir's lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "wd")], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_second_run_is_refused_with_the_holder_named(tmp_path, holder):
    with pytest.raises(WorkdirBusyError) as refused, WorkdirLock(tmp_path / "wd", "run"):
        pytest.fail("entered a workdir another process holds")
    message = str(refused.value)
    assert f"is in use by pid {holder.pid} on " in message and "`ptwiki-llm data`" in message
    assert "started at" in message and "--set workdir=" in message
    assert refused.value.exit_code == EXIT_BUSY


def test_a_waiting_run_gets_the_workdir_once_the_holder_is_gone(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)  # the kernel drops the lock with the process
    started = time.monotonic()
    with WorkdirLock(tmp_path / "wd", "run", wait_s=30) as lock:
        assert time.monotonic() - started < 30
        assert lock.abandoned is not None and lock.abandoned["pid"] == holder.pid  # its note was left behind
        assert read_holder(tmp_path / "wd")["pid"] == os.getpid()
    assert not (tmp_path / "wd" / HOLDER_FILE).exists()


def test_released_lock_leaves_no_note_and_can_be_taken_again(tmp_path):
    for _ in range(2):
        with WorkdirLock(tmp_path / "wd", "data") as lock:
            assert lock.abandoned is None
    assert read_holder(tmp_path / "wd") is None


def test_owner_liveness():
    me = current_owner()
    assert owner_alive(me) is True
    assert owner_alive({**me, "process_start": me["process_start"] - 3600}) is False  # pid reused
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert owner_alive({**me, "pid": finished.pid, "process_start": None}) is False
    assert owner_alive({"host": "another-node", "pid": 1}) is None  # cannot tell from here
