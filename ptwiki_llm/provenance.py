"""Where an artifact came from: content hashes, git commit, container image, package versions."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024

# The folder that holds ptwiki_llm/, steps/ and pipelines/ (the repository, or site-packages when installed).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of an input (name, size, mtime) for cache keys; sha256 goes in the manifest."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"path": str(path.resolve()), "files": [file_fingerprint(p) for p in files]}
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@cache
def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the repository holding this package (with '-dirty' when it has local changes)."""
    root = repo or SOURCE_ROOT
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("PTWIKI_GIT_COMMIT")  # images bake it in at build time
    return f"{head}-dirty" if dirty else head


def container_image() -> dict[str, str] | None:
    """The Apptainer/podman/Docker image this process runs in, if any (digest when the launcher exported it)."""
    podman = os.environ.get("container") == "podman"  # noqa: SIM112 (podman sets it in lowercase)
    if podman or Path("/run/.containerenv").exists():
        return {"runtime": "podman", "image": os.environ.get("PTWIKI_IMAGE", ""),
                "digest": os.environ.get("PTWIKI_IMAGE_DIGEST", ""),
                "lock_sha256": os.environ.get("PTWIKI_IMAGE_LOCK_SHA256", "")}
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return {
            "runtime": "apptainer",
            "image": os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER", ""),
            "digest": os.environ.get("PTWIKI_IMAGE_DIGEST", ""),
            "lock_sha256": os.environ.get("PTWIKI_IMAGE_LOCK_SHA256", ""),
        }
    if Path("/.dockerenv").exists():
        return {"runtime": "docker", "image": os.environ.get("PTWIKI_IMAGE", ""), "digest": os.environ.get(
            "PTWIKI_IMAGE_DIGEST", "")}
    return None


def package_versions(names: tuple[str, ...] = ("ptwiki-llm", "pyarrow", "lxml", "zenml", "mlflow")) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
