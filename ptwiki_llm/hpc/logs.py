"""Job logs on the shared filesystem: follow them while jobs run, quote the tail of a failed one."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a (possibly large) log; empty when it does not exist."""
    if lines <= 0 or not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        block = 64 * 1024
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return "\n".join(deque(text.splitlines(), maxlen=lines))


class LogFollower:
    """Reads what each log gained since the last call and hands it on line by line, with a prefix."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}

    def poll(self, prefix: str, path: Path, final: bool = False) -> None:
        if not path.is_file():
            return
        offset = self._offsets.get(path, 0)
        size = path.stat().st_size
        if size < offset:  # truncated or replaced: start over
            offset = 0
        if size == offset and not final:
            return
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(size - offset)
        self._offsets[path] = offset + len(chunk)
        text = self._partial.pop(path, "") + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        rest = lines.pop()  # after the last newline: an unfinished line waits for its end
        if final and rest:
            lines.append(rest)
        elif not final:
            self._partial[path] = rest
        for line in lines:
            self.emit(f"{prefix} {line.rstrip()}")
