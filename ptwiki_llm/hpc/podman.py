"""Steps inside OCI images with podman: the ``podman run`` command of a job, and the image's content id.

What ``apptainer exec --cleanenv`` gives a step, made explicit for podman:

- environment: only the job's variables, each passed by name (``--env NAME``: podman reads the value from the
  job script's environment, so secrets never appear on a command line), plus ``SLURM_*`` and the GPUs SLURM
  bound to the job; the image's own ``ENV`` lines (PATH, offline switches) apply as in a SIF;
- the same files: the repository at ``app_dir`` and every other path mounted at its own location;
- no network unless the job talks to a server (``network``);
- a small init (``--init``: catatonit) forwards signals, so the time-limit warning and ``scancel`` (forwarded by
  the job script to ``podman run``) reach the step as on the host.

Podman puts the container in a cgroup of its own, outside the job's: where SLURM confines jobs with cgroups, add
``--cgroups=disabled`` (crun only; runc refuses it) to ``hpc.podman.extra_args`` so the job's limits cover the step.

The image runs by its content id, resolved at submit time: the id recorded in MLflow is the one that ran.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

# Variables a job passes into the image besides its environment file (podman expands a trailing *).
JOB_VARIABLES = ("SLURM_*", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")
# Where a step's environment points at a server; a job with one of these on http(s) needs a network.
SERVER_VARIABLES = ("MLFLOW_TRACKING_URI", "ZENML_STORE_URL", "WEAVIATE_URL")


class PodmanImageError(RuntimeError):
    """The configured image is not in podman's storage (or podman cannot be asked)."""


def mount_specs(binds: Sequence[str]) -> list[str]:
    """``-v`` specs from bind specs: ``src:dst[:opts]`` kept, a bare path mounted at its own location."""
    return [spec if ":" in spec else f"{spec}:{spec}" for spec in binds]


def job_network(setting: str, environment: Mapping[str, str]) -> str:
    """``none`` unless the step must reach a server (then ``host``, as Apptainer shares the host's network)."""
    if setting != "auto":
        return setting
    talks = any(str(environment.get(name, "")).startswith(("http://", "https://")) for name in SERVER_VARIABLES)
    return "host" if talks else "none"


def podman_command(
    image: str,
    command: Sequence[str],
    env_names: Sequence[str],
    binds: Sequence[str],
    *,
    executable: str = "podman",
    global_args: Sequence[str] = (),
    app_dir: str = "/app",
    network: str = "none",
    gpus: bool = False,
    cleanenv: bool = True,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``podman [global] run --rm --init --network=N --env NAME... -v ... -w /app [extra] --entrypoint <cmd>``."""
    argv = [executable, *global_args, "run", "--rm", "--init", f"--network={network}"]
    if not cleanenv:
        argv.append("--env-host")
    for name in (*sorted(set(env_names)), *JOB_VARIABLES):
        argv += ["--env", name]
    if gpus:
        argv += ["--device", "nvidia.com/gpu=all"]  # CDI (nvidia-ctk cdi generate); CUDA_VISIBLE_DEVICES limits it
    for spec in mount_specs(binds):
        argv += ["-v", spec]
    # exactly this command, as `apptainer exec` runs it: the image's ENTRYPOINT does not prefix it
    argv += ["-w", app_dir, *extra_args, "--entrypoint", command[0], image, *command[1:]]
    return argv


def image_id(image: str, executable: str = "podman", global_args: Sequence[str] = ()) -> str:
    """``sha256:<hex>`` content id of a local image (the config digest podman names the image by)."""
    try:
        result = subprocess.run(
            [executable, *global_args, "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PodmanImageError(f"cannot ask {executable} about image {image}: {exc}") from exc
    found = result.stdout.strip().removeprefix("sha256:")
    if result.returncode != 0 or len(found) != 64:
        raise PodmanImageError(
            f"OCI image {image} not found by `{executable} image inspect` ({result.stderr.strip()[-300:]}): build it "
            "(containers/build.sh pipeline prints its reference) or fix hpc.slurm.image"
        )
    return f"sha256:{found}"


def job_prelude(quoted_env_file: str) -> list[str]:
    """Job script lines before ``podman run``: the step's variables into this shell (they reach podman by name)."""
    return [
        "set -a",
        "# shellcheck source=/dev/null",
        f"source {quoted_env_file}",
        "set +a",
        "# the per-job ZenML config dir lives in the container's own /tmp",
        'export ZENML_CONFIG_PATH="/tmp/ptwiki-zenml-${SLURM_JOB_ID:-$$}"',
    ]
