"""A real Weaviate server on loopback, for tests and benchmarks: the binary ``infra/weaviate/build-local.sh``
builds, started through ``infra/weaviate/run-local.sh`` (the environment shared with ``server.sbatch``) on
free ports, API-key authentication on, data in a given folder; ready when ``/v1/.well-known/ready`` answers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "infra" / "weaviate"
BUILD_SCRIPT = INFRA / "build-local.sh"
RUN_SCRIPT = INFRA / "run-local.sh"


class LocalWeaviateError(RuntimeError):
    pass


def pinned_version() -> str:
    return (INFRA / "VERSION").read_text(encoding="utf-8").strip()


def server_binary() -> Path | None:
    """``$WEAVIATE_SERVER_BIN``, else where build-local.sh puts the pinned version; None when neither exists."""
    explicit = os.environ.get("WEAVIATE_SERVER_BIN")
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    cache = Path(os.environ.get("PTWIKI_CACHE", "/var/cache/ptwiki"))
    built = cache / "weaviate" / pinned_version() / "bin" / "weaviate-server"
    return built if os.access(built, os.X_OK) else None


def missing_binary_reason() -> str:
    where = os.environ.get("WEAVIATE_SERVER_BIN") or "the build cache (PTWIKI_CACHE, default /var/cache/ptwiki)"
    return (f"no weaviate-server {pinned_version()} binary in {where}: build it with infra/weaviate/build-local.sh "
            "(Go >= 1.26 and the Go module proxy; several minutes the first time), or set WEAVIATE_SERVER_BIN")


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started the server dies, so a test run
    killed from outside (a timeout) leaves no server behind."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_ports(count: int, consecutive: bool, held: ExitStack) -> list[int]:
    """Ports the OS calls free, held open (by ``held``) until the server is about to bind them."""
    for _ in range(50):
        sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.bind(("127.0.0.1", 0))
        first = sock.getsockname()[1]
        ports = [first]
        try:
            for offset in range(1, count):
                nxt = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                port = first + offset if consecutive else 0
                nxt.bind(("127.0.0.1", port))
                ports.append(nxt.getsockname()[1])
            return ports
        except OSError:
            continue
    raise LocalWeaviateError(f"found no {count} free {'consecutive ' if consecutive else ''}ports on 127.0.0.1")


class LocalWeaviate:
    """One server process; ``start``/``stop``/``kill``/``restart`` (same ports, same data folder)."""

    def __init__(self, data_dir: Path, binary: Path | None = None, api_key: str | None = None,
                 log_path: Path | None = None, start_timeout_s: float = 180.0) -> None:
        found = binary or server_binary()
        if found is None:
            raise LocalWeaviateError(missing_binary_reason())
        self.binary = Path(found)
        self.data_dir = Path(data_dir)
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        with ExitStack() as held:
            self.http_port, self.grpc_port = _free_ports(2, consecutive=False, held=held)
            self.gossip_port, _ = _free_ports(2, consecutive=True, held=held)
            self.raft_port, _ = _free_ports(2, consecutive=True, held=held)

    @property
    def url(self) -> str:
        """What WEAVIATE_URL should hold: the REST endpoint, with the gRPC port the client also needs."""
        return f"http://127.0.0.1:{self.http_port}?grpc_port={self.grpc_port}"

    def environment(self) -> dict[str, str]:
        return {
            "WEAVIATE_SERVER_BIN": str(self.binary), "WEAVIATE_DATA_DIR": str(self.data_dir),
            "WEAVIATE_API_KEY": self.api_key, "WEAVIATE_HOST": "127.0.0.1", "WEAVIATE_PORT": str(self.http_port),
            "WEAVIATE_GRPC_PORT": str(self.grpc_port), "WEAVIATE_GOSSIP_PORT": str(self.gossip_port),
            "WEAVIATE_RAFT_PORT": str(self.raft_port), "WEAVIATE_NODE": "ptwiki-local",
        }

    def start(self) -> LocalWeaviate:
        if self.process is not None and self.process.poll() is None:
            raise LocalWeaviateError(f"weaviate-server already runs (pid {self.process.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEAVIATE_", "AUTHENTICATION_"))}
        env.update(self.environment())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(["bash", str(RUN_SCRIPT)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self._wait_ready()
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v1/.well-known/ready", timeout=2) as r:
                http_ready = r.status == 200
        except (urllib.error.URLError, OSError):
            return False
        if not http_ready:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            return sock.connect_ex(("127.0.0.1", self.grpc_port)) == 0

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalWeaviateError(f"weaviate-server exited with {self.process.returncode} before it was "
                                         f"ready; its log ({self.log_path}) ends:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.25)
        self.kill()
        raise LocalWeaviateError(f"weaviate-server was not ready within {self.start_timeout_s:.0f} s; its log "
                                 f"({self.log_path}) ends:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: no flush, no shutdown hooks (what a crash or an OOM kill does)."""
        self._signal(signal.SIGKILL, wait_s=30)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (Weaviate flushes and exits), SIGKILL after ``timeout_s``."""
        if not self._signal(signal.SIGTERM, wait_s=timeout_s):
            self.kill()

    def restart(self) -> LocalWeaviate:
        self.stop()
        return self.start()

    def _signal(self, sig: signal.Signals, wait_s: float) -> bool:
        process = self.process
        if process is None or process.poll() is not None:
            return True
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def __enter__(self) -> LocalWeaviate:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
