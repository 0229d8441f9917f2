"""The OCI images the container tests run: found (never built) here, with podman as containers/build.sh calls it.

CI (.ci/run) builds or reuses the pipeline image and exports its reference as PTWIKI_PIPELINE_IMAGE; elsewhere
``containers/build.sh --ref pipeline`` names the image of the current lock and Dockerfile if it was built.
Without podman, or without the image, a test skips and says which command makes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "containers" / "build.sh"
PIPELINE_LOCKS = ("requirements/constraints.txt", "requirements/torch-cpu.txt")


def podman() -> list[str]:
    """podman with this machine's runtime (PODMAN_RUNTIME, as for containers/build.sh); skips without podman."""
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (apt-get install podman runc debootstrap; README 'Containers')")
    runtime = os.environ.get("PODMAN_RUNTIME")
    return ["podman", *(["--runtime", runtime] if runtime else [])]


def run_args() -> list[str]:
    """``podman run`` options this machine needs (PODMAN_ULIMITS, as for containers/build.sh)."""
    return [arg for limit in os.environ.get("PODMAN_ULIMITS", "").split() for arg in ("--ulimit", limit)]


def lock_sha256(files: tuple[str, ...] = PIPELINE_LOCKS) -> str:
    return hashlib.sha256(b"".join((REPO / name).read_bytes() for name in files)).hexdigest()


def pipeline_image() -> str:
    """The pipeline image's reference; skips (saying how to build it) when there is none for this lock."""
    podman()
    ref = os.environ.get("PTWIKI_PIPELINE_IMAGE")
    if not ref:
        found = subprocess.run([str(BUILD), "--ref", "pipeline"], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
        if found.returncode != 0:
            pytest.skip("no pipeline image for this lock and Dockerfile: build it with containers/build.sh pipeline "
                        f"(.ci/run does; `build.sh --ref` said: {found.stderr.strip()[-300:]})")
        ref = found.stdout.strip()
    return ref


def inspect(ref: str, field: str) -> str:
    result = subprocess.run([*podman(), "image", "inspect", "--format", field, ref], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"podman image inspect {ref}: {result.stderr}"
    return result.stdout.strip()


def run_in(ref: str, *command: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*podman(), "run", "--rm", "--network=none", *run_args(), "--entrypoint", command[0], ref,
                           *command[1:]], capture_output=True, text=True, timeout=timeout)
