"""One run at a time per workdir: an OS file lock, plus a note saying who holds it.

The lock (``filelock``: ``flock`` on Unix) is released by the kernel when its process dies, so a
killed run never blocks the next one. The note beside it (pid, host, command, start time) lets a
refused run name the holder, and, when it is still there after its writer died, tells the next run
that the previous one ended without cleaning up (its runs are then looked at by ``stale_runs``).
Read-only commands do not take the lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ptwiki_llm.errors import WorkdirBusyError
from ptwiki_llm.run_owner import current_owner, describe, owner_alive

LOCK_FILE = ".ptwiki.lock"
HOLDER_FILE = ".ptwiki.lock.json"


def holder_path(workdir: Path) -> Path:
    return Path(workdir) / HOLDER_FILE


def read_holder(workdir: Path) -> dict[str, Any] | None:
    """The note of the process that holds (or last held without releasing) the workdir's lock."""
    try:
        return json.loads(holder_path(workdir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class WorkdirLock:
    """``with WorkdirLock(workdir, "data"):`` holds the workdir for this process or raises WorkdirBusyError.

    ``wait_s``: how long to wait for another run to finish (0: refuse at once). After entering,
    ``abandoned`` is the note of a previous holder that died without releasing, else None.
    """

    def __init__(self, workdir: str | Path, command: str, wait_s: float = 0.0) -> None:
        self.workdir = Path(workdir)
        self.command = command
        self.wait_s = wait_s
        self.abandoned: dict[str, Any] | None = None
        self._lock: FileLock | None = None

    def __enter__(self) -> WorkdirLock:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.workdir / LOCK_FILE), thread_local=False)
        try:
            if self.wait_s > 0:
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    print(f"waiting up to {self.wait_s:.0f} s for {self._busy_text()} to finish ...", file=sys.stderr)
                    lock.acquire(timeout=self.wait_s)
            else:
                lock.acquire(timeout=0)
        except Timeout as exc:
            raise WorkdirBusyError(
                self._busy_text(),
                "Wait for it to finish, or give this run its own workdir (--set workdir=DIR or PTWIKI_WORKDIR)",
            ) from exc
        self._lock = lock
        previous = read_holder(self.workdir)
        if previous and previous.get("pid") != os.getpid() and owner_alive(previous) is not True:
            self.abandoned = previous
        note = {**current_owner(), "command": self.command,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        holder_path(self.workdir).write_text(json.dumps(note), encoding="utf-8")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lock is None:
            return
        holder_path(self.workdir).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def _busy_text(self) -> str:
        holder = read_holder(self.workdir)
        for _ in range(20):  # the holder writes its note just after taking the lock
            if holder:
                break
            time.sleep(0.05)
            holder = read_holder(self.workdir)
        if not holder:
            return f"workdir {self.workdir} is in use by another run"
        return (f"workdir {self.workdir} is in use by {describe(holder)} "
                f"(`ptwiki-llm {holder.get('command', '?')}`, started at {holder.get('started_at', '?')})")


@contextmanager
def workdir_lock(workdir: str | Path, command: str, wait_s: float = 0.0) -> Iterator[WorkdirLock]:
    with WorkdirLock(workdir, command, wait_s) as held:
        yield held
