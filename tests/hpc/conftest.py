"""A running SLURM cluster for the ``slurm`` tests: the one-node cluster of infra/local-slurm/start.sh.

CI (.ci/run) starts it before the tests; here the fixture starts it too when it is down and we are
root. Without sbatch, or with no controller answering, the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START = REPO / "infra" / "local-slurm" / "start.sh"
PARTITION = "debug"  # configs/local-slurm.yaml and start.sh agree on it


def _controller_answers() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition to submit to; skips when no SLURM cluster is available."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        pytest.skip("sbatch/squeue not on PATH: apt-get install slurmctld slurmd slurm-client munge, "
                    "then sudo infra/local-slurm/start.sh")
    if not _controller_answers() and os.geteuid() == 0 and START.is_file():
        subprocess.run([str(START)], capture_output=True, text=True, timeout=300, check=False)
    if not _controller_answers():
        pytest.skip("no SLURM controller answers `scontrol ping`: start one with sudo infra/local-slurm/start.sh")
    partitions = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=20).stdout.split()
    if PARTITION not in partitions:
        pytest.skip(f"partition {PARTITION!r} (configs/local-slurm.yaml) not on this cluster: {partitions}")
    return PARTITION
