"""The sbatch job script of one ZenML step, its submit command line and its ``apptainer exec``/``podman run``.

Pure functions of the configuration, so tests can check every generated line. The script:

- carries all job options as ``#SBATCH`` lines (it can be resubmitted by hand); only the dependency on
  upstream jobs goes on the ``sbatch`` command line, because job ids exist only at submit time;
- reads the step's environment from a 0600 file (secrets never appear on a command line or in the script);
- runs the step in the background and forwards SIGUSR1/SIGTERM to it (bash runs traps only between
  commands and while it ``wait``s), so a trainer can checkpoint when SLURM warns of the time limit
  (``--signal=B:USR1@<s>``); the step starts with SIGUSR1 ignored and the warning is repeated until it
  exits, so a warning that arrives before the trainer installed its handler is neither fatal nor lost;
- installs those handlers before anything else runs: a signal during the job's setup, or between the
  step's start and its pid being known, is recorded (a cancel before the start means the step never runs);
- requeues itself (``scontrol requeue``) when the step exits with the "checkpoint saved, run me again" code
  after the time-limit warning, keeping its job id so downstream ``afterok`` dependencies still hold;
- never requeues once it got SIGTERM or SIGINT (``scancel``, the driver's Ctrl-C, the time limit itself):
  cancel means cancel, whatever the step's exit code.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptwiki_llm.config import SlurmJobConfig
from ptwiki_llm.hpc import podman

LOG_PREFIX = "[ptwiki-slurm]"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class JobScriptError(ValueError):
    """A configuration value that cannot go into a job script."""


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps upstream first (ties in name order), so each job's dependencies are submitted before it."""
    remaining = {step: set(parents) for step, parents in upstream.items()}
    unknown = {p for parents in remaining.values() for p in parents} - set(remaining)
    if unknown:
        raise ValueError(f"upstream steps not in the pipeline: {sorted(unknown)}")
    order: list[str] = []
    while remaining:
        ready = sorted(step for step, parents in remaining.items() if not parents)
        if not ready:
            raise ValueError(f"the steps form a cycle: {sorted(remaining)}")
        for step in ready:
            order.append(step)
            del remaining[step]
        for parents in remaining.values():
            parents.difference_update(ready)
    return order


def job_name(prefix: str, step: str, run_id: str) -> str:
    """``<prefix>-<step>-<first 8 characters of the run id>``: readable in squeue, unique per run."""
    return _JOB_NAME_UNSAFE.sub("_", f"{prefix}-{step}-{run_id[:8]}")


def gres_value(job: SlurmJobConfig) -> str | None:
    if job.gres:
        return job.gres
    if job.gpus == 0:
        return None
    return f"gpu:{job.gpu_type}:{job.gpus}" if job.gpu_type else f"gpu:{job.gpus}"


def _directive_value(option: str, value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() for c in text):
        raise JobScriptError(f"sbatch option --{option}: {text!r} is empty or contains whitespace")
    return text


def sbatch_directives(job: SlurmJobConfig, name: str, log_path: Path) -> list[str]:
    """The sbatch options of a step's job, in a fixed order (one per ``#SBATCH`` line)."""
    options: list[tuple[str, object | None]] = [
        ("job-name", name),
        ("output", log_path),
        ("open-mode", "append"),  # a requeued attempt appends to the same log
        ("partition", job.partition),
        ("account", job.account),
        ("qos", job.qos),
        ("time", job.time),
        ("nodes", job.nodes),
        ("ntasks-per-node", job.ntasks_per_node),
        ("cpus-per-task", job.cpus_per_task),
        ("mem", job.mem),
        ("gres", gres_value(job)),
    ]
    lines = [f"--{option}={_directive_value(option, value)}" for option, value in options if value is not None]
    if job.requeue:
        lines += ["--requeue", f"--signal=B:USR1@{job.signal_seconds}"]
    else:
        lines.append("--no-requeue")  # a node failure must not silently re-run a step ZenML saw start
    for extra in job.extra_sbatch_args:
        if any(c.isspace() for c in extra) or not extra.startswith("-"):
            raise JobScriptError(f"extra_sbatch_args: {extra!r} must be one option like --constraint=a100")
        lines.append(extra)
    return lines


def submit_command(script: Path, after_ok: Sequence[str] = (), sbatch: str = "sbatch") -> list[str]:
    """``sbatch --parsable [--dependency=afterok:<ids> --kill-on-invalid-dep=yes] <script>``."""
    command = [sbatch, "--parsable"]
    if after_ok:
        # without kill-on-invalid-dep, dependents of a failed job would stay PENDING forever
        command += [f"--dependency=afterok:{':'.join(after_ok)}", "--kill-on-invalid-dep=yes"]
    return [*command, str(script)]


def bind_specs(source_root: Path, app_dir: str, paths: Iterable[Path], extra: Iterable[str] = ()) -> list[str]:
    """``--bind`` specs: the repo at ``app_dir``, then each path at its own location (nested ones dropped)."""
    specs = [f"{source_root}:{app_dir}"]
    unique = sorted({Path(p) for p in paths})
    kept: list[Path] = []
    for path in unique:
        if any(path == parent or parent in path.parents for parent in kept):
            continue
        kept.append(path)
    for path in kept:
        if "," in str(path) or ":" in str(path):
            raise JobScriptError(f"cannot bind {path}: ',' and ':' separate apptainer bind specs")
        specs.append(str(path))
    specs.extend(extra)
    return specs


@dataclass(frozen=True)
class ImageLaunch:
    """How a step runs inside an image: ``apptainer exec`` of a .sif, or ``podman run`` of an OCI image."""

    image: str
    executable: str = "apptainer"
    app_dir: str = "/app"
    binds: tuple[str, ...] = ()
    nv: bool = False
    cleanenv: bool = True
    extra_args: tuple[str, ...] = ()
    runtime: str = "apptainer"  # or "podman"
    global_args: tuple[str, ...] = ()  # podman: options before `run`
    network: str = "none"  # podman: none or host
    env_names: tuple[str, ...] = ()  # podman: the job's variables, passed by name


def apptainer_command(launch: ImageLaunch, env_file: Path, command: Sequence[str]) -> list[str]:
    """``apptainer exec [--nv] [--cleanenv] --env-file F --bind B --pwd /app <sif> <command>``."""
    argv = [launch.executable, "exec"]
    if launch.nv:
        argv.append("--nv")
    if launch.cleanenv:
        argv.append("--cleanenv")
    argv += ["--env-file", str(env_file)]
    if launch.binds:
        argv += ["--bind", ",".join(launch.binds)]
    argv += ["--pwd", launch.app_dir, *launch.extra_args, launch.image, *command]
    return argv


def env_file_text(environment: Mapping[str, str]) -> str:
    """``KEY='value'`` lines, sorted: readable by bash (``set -a; source``) and by ``apptainer --env-file``."""
    lines = []
    for key in sorted(environment):
        if not _ENV_NAME.match(key):
            raise JobScriptError(f"invalid environment variable name {key!r}")
        lines.append(f"{key}={shlex.quote(str(environment[key]))}")
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, environment: Mapping[str, str]) -> None:
    """Create the file 0600 before writing: it may hold a ZenML API token or MLflow credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = path.open("x", encoding="utf-8")
    try:
        path.chmod(0o600)
        fd.write(env_file_text(environment))
    finally:
        fd.close()


@dataclass(frozen=True)
class JobSpec:
    """Everything the job script of one step needs."""

    step: str
    name: str
    run_id: str
    job: SlurmJobConfig
    command: tuple[str, ...]  # the ZenML step entrypoint
    workdir: str  # where the job script cds to (the repo on the host; the job folder around an image)
    script_path: Path
    log_path: Path
    env_path: Path
    image: ImageLaunch | None = None
    requeue_exit_code: int = 75
    max_requeues: int = 0  # 0 = never requeue (the ZenML step allows no retry)
    warning_repeat_seconds: int = 30  # after SIGUSR1, forwarded again this often until the step exits
    header: tuple[str, ...] = field(default_factory=tuple)


def _q(value: object) -> str:
    return shlex.quote(str(value))


def render_job_script(spec: JobSpec) -> str:
    """The bash job script for ``sbatch``."""
    job = spec.job
    lines = [
        "#!/bin/bash",
        f"# ptwiki-llm: ZenML step `{spec.step}` of pipeline run {spec.run_id}.",
        "# Generated by ptwiki_llm.hpc.jobscript; the step's environment is in the 0600 file it sources.",
        *(f"# {line}" for line in spec.header),
        *(f"#SBATCH {directive}" for directive in sbatch_directives(job, spec.name, spec.log_path)),
        "set -uo pipefail",
        "",
        "# the signal handlers come first, before anything else runs: a cancel or a time-limit warning that",
        "# arrives while the job is still setting up, or between the step's start and `child=$!`, is recorded",
        "# (bash runs a trap between two commands and while it waits) and reaches the step once it runs",
        'child=""',
        "warned=0",
        "cancelled=0",
        "trap 'warned=1; [[ -z \"$child\" ]] || kill -USR1 \"$child\" 2>/dev/null' USR1",
        "# a cancel, TERM or INT; the step ignores SIGINT (it starts so, below): an interrupt reaches it as TERM",
        "trap 'cancelled=1; [[ -z \"$child\" ]] || kill -TERM \"$child\" 2>/dev/null' TERM INT",
        "",
        "attempt=${SLURM_RESTART_COUNT:-0}",
        f'echo "{LOG_PREFIX} step {spec.step}: job ${{SLURM_JOB_ID:-?}} attempt $attempt '
        f'on $(hostname) at $(date -Iseconds)"',
    ]
    lines += list(job.setup)  # site lines first: they may be what defines `module`
    if job.modules:
        lines.append("module load " + " ".join(_q(m) for m in job.modules))
    lines += [
        "# one compute thread per allocated core: torch and BLAS otherwise start one per core of the node",
        'export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"',
    ]
    env_file = _q(spec.env_path)
    if spec.image is None:
        lines += [
            "set -a",
            "# shellcheck source=/dev/null",
            f"source {env_file}",
            "set +a",
            'export ZENML_CONFIG_PATH="${TMPDIR:-/tmp}/ptwiki-zenml-${SLURM_JOB_ID:-$$}"',
        ]
        command = list(spec.command)
    elif spec.image.runtime == "podman":
        lines += podman.job_prelude(env_file)
        launch = spec.image
        command = podman.podman_command(
            launch.image, spec.command, (*launch.env_names, "ZENML_CONFIG_PATH", "OMP_NUM_THREADS"), launch.binds,
            executable=launch.executable, global_args=launch.global_args, app_dir=launch.app_dir,
            network=launch.network, gpus=launch.nv, cleanenv=launch.cleanenv, extra_args=launch.extra_args,
        )
    else:
        lines += [
            "# --cleanenv drops the host environment; SLURM_*, the GPUs SLURM bound to the job and the per-job",
            "# ZenML config dir go in explicitly",
            'while IFS= read -r name; do export "APPTAINERENV_${name}=${!name}"; done < <(compgen -e | grep -E '
            "'^(SLURM_|CUDA_VISIBLE_DEVICES$|GPU_DEVICE_ORDINAL$|ROCR_VISIBLE_DEVICES$)')",
            'export APPTAINERENV_ZENML_CONFIG_PATH="/tmp/ptwiki-zenml-${SLURM_JOB_ID:-$$}"',
            'export APPTAINERENV_OMP_NUM_THREADS="$OMP_NUM_THREADS"',
            'export ZENML_CONFIG_PATH="/tmp/ptwiki-zenml-${SLURM_JOB_ID:-$$}"',
        ]
        command = apptainer_command(spec.image, spec.env_path, spec.command)
    lines += [
        f"cd {_q(spec.workdir)} || exit 1",
        "",
        "if ((cancelled)); then",
        f'    echo "{LOG_PREFIX} step {spec.step}: cancelled before it started"',
        "    rc=143",
        "else",
        "    # the step starts with USR1 ignored (its subshell ignores it, then execs the step), so a warning that",
        "    # comes before the step installed its handler cannot kill it; INT and QUIT ignored too, as bash starts",
        "    # a background command (an interrupt reaches the step as TERM, from the trap above)",
        "    ( trap '' USR1 INT QUIT; exec " + " ".join(_q(arg) for arg in command) + " ) &",
        "    child=$!",
        '    if ((cancelled)); then kill -TERM "$child" 2>/dev/null; fi  # it came between the start and child=$!',
        '    wait "$child"',
        '    while kill -0 "$child" 2>/dev/null; do',
        "        if ((warned && !cancelled)); then",
        "            # repeat the warning until the step exits: it may have installed its handler only now",
        f"            for _ in $(seq {spec.warning_repeat_seconds}); do",
        '                kill -0 "$child" 2>/dev/null || break',
        "                sleep 1",
        "            done",
        '            kill -USR1 "$child" 2>/dev/null',
        "        else",
        '            wait "$child"',
        "        fi",
        "    done",
        '    wait "$child"',
        "    rc=$?",
        "fi",
        "trap - USR1 TERM INT",
        'rm -rf "$ZENML_CONFIG_PATH"',
        f'echo "{LOG_PREFIX} step {spec.step}: exit code $rc"',
    ]
    if spec.max_requeues > 0:
        # only the time-limit warning earns a requeue for the checkpoint exit code; a cancel never does
        retry_on = f'[[ "$rc" -eq {spec.requeue_exit_code} ]] && ((warned))'
        if job.requeue_on_failure:
            retry_on = '[[ "$rc" -ne 0 ]]'
        lines += [
            "if ((cancelled)); then",
            f'    echo "{LOG_PREFIX} step {spec.step}: cancelled (SIGTERM/SIGINT): not requeued"',
            f"elif {retry_on} && ((attempt < {spec.max_requeues})); then",
            f'    echo "{LOG_PREFIX} step {spec.step}: requeueing job $SLURM_JOB_ID '
            f'(attempt $((attempt + 1)) of {spec.max_requeues})"',
            '    if scontrol requeue "$SLURM_JOB_ID"; then',
            "        exit 0",
            "    fi",
            f'    echo "{LOG_PREFIX} step {spec.step}: scontrol requeue failed; the job ends here"',
            "fi",
        ]
    if not any(arg.startswith("--array") for arg in job.extra_sbatch_args):
        lines.append(f"rm -f {env_file}")  # the tasks of an array share theirs (no secrets: hpc.job_array)
    lines += ['exit "$rc"', ""]
    return "\n".join(lines)
