"""ZenML orchestrator: every step of a pipeline run is one sbatch job; the DAG is SLURM dependencies.

Jobs are submitted upstream first, each with ``--dependency=afterok:<upstream ids>`` and
``--kill-on-invalid-dep=yes`` (so SLURM cancels the dependents of a failed job instead of leaving them pending). What
else a failure ends follows the pipeline's ZenML execution mode (``jobs_to_cancel``). Each job runs ZenML's
step entrypoint on the host or inside the step's Apptainer or podman image; the step reads the ZenML store, the
artifact store and MLflow itself, exactly as under the local orchestrator. While waiting, the driver polls
squeue/sacct, streams the job logs, and on failure reports the job id, its state and exit code and the tail
of its log, and marks the ZenML run failed.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

from zenml.config.global_config import GlobalConfiguration
from zenml.enums import ExecutionMode, ExecutionStatus, StoreType
from zenml.orchestrators import BaseOrchestrator, SubmissionResult

from ptwiki_llm.assets import OFFLINE_VARS
from ptwiki_llm.config import SlurmJobConfig
from ptwiki_llm.hpc import detached, job_array
from ptwiki_llm.hpc.entrypoint import SOURCE_ROOT_ENV, SlurmStepEntrypointConfiguration
from ptwiki_llm.hpc.flavor import SlurmOrchestratorConfig, SlurmOrchestratorSettings
from ptwiki_llm.hpc.images import image_digest
from ptwiki_llm.hpc.jobscript import (
    ImageLaunch,
    JobSpec,
    bind_specs,
    job_name,
    render_job_script,
    submit_command,
    topological_order,
    write_env_file,
)
from ptwiki_llm.hpc.logs import LogFollower, tail
from ptwiki_llm.hpc.podman import image_id, job_network
from ptwiki_llm.hpc.slurm import PENDING_STATES, JobInfo, SlurmClient, SlurmError
from ptwiki_llm.provenance import SOURCE_ROOT, git_commit

if TYPE_CHECKING:
    from zenml.config.step_configurations import Step
    from zenml.models import PipelineRunResponse, PipelineSnapshotResponse
    from zenml.stack import Stack

ENV_RUN_ID = "PTWIKI_SLURM_RUN_ID"
METADATA_JOB_IDS = "slurm_job_ids"
METADATA_JOBS_DIR = "slurm_jobs_dir"
UNKNOWN_JOB_POLLS = 12  # a job neither squeue nor sacct knows for this many polls counts as failed
SLURM_ERROR_POLLS = 10  # squeue/sacct failing this many polls in a row ends the wait (the jobs run on)
OFFLINE_ENV = dict.fromkeys(OFFLINE_VARS, "1")
QUIET_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1", "ZENML_ENABLE_RICH_TRACEBACK": "false", "ZENML_LOGGING_COLORS_DISABLED": "true",
}

emit: Callable[[str], None] = functools.partial(print, flush=True)


class SlurmRunFailed(RuntimeError):
    """One or more step jobs failed; the message names each job, its exit code and its log tail."""


@dataclass(frozen=True)
class SubmittedJob:
    step: str
    job_id: str
    after_ok: tuple[str, ...]
    command: tuple[str, ...]
    script: str
    log: str
    env_file: str


@dataclass(frozen=True)
class JobFailure:
    step: str
    job_id: str
    state: str
    exit_code: int | None
    signal: int | None
    reason: str
    log: str
    log_tail: str


def failure_report(failures: Sequence[JobFailure], cancelled: Mapping[str, str]) -> str:
    """The error a failed run raises: what failed, how, where its log is, and what was cancelled."""
    parts = []
    for failure in failures:
        code = "unknown" if failure.exit_code is None else str(failure.exit_code)
        if failure.signal:
            code += f" (signal {failure.signal})"
        head = (f"step `{failure.step}` failed: SLURM job {failure.job_id} {failure.state}, exit code {code}"
                + (f", reason {failure.reason}" if failure.reason and failure.reason != "None" else ""))
        body = f"log {failure.log}"
        if failure.log_tail:
            body += " ends with:\n" + "\n".join(f"    {line}" for line in failure.log_tail.splitlines())
        else:
            body += " (empty or missing)"
        parts.append(f"{head}\n  {body}")
    if cancelled:
        listed = ", ".join(f"`{step}` (job {job_id})" for step, job_id in sorted(cancelled.items()))
        parts.append(f"cancelled because of the failure: {listed}")
    return "\n".join(parts)


def jobs_to_cancel(mode: ExecutionMode, infos: Mapping[str, JobInfo], unfinished: Sequence[str]) -> list[str]:
    """The jobs a failure ends, by ZenML's execution modes.

    FAIL_FAST cancels every unfinished job, running ones included. STOP_ON_FAILURE starts nothing new but
    lets running jobs finish (a failed train must not kill the index job beside it): only jobs that have
    not started are cancelled. CONTINUE_ON_FAILURE cancels nothing: SLURM itself cancels the dependents of
    the failed job (``--kill-on-invalid-dep=yes``) and every independent branch runs on.
    """
    if mode == ExecutionMode.CONTINUE_ON_FAILURE:
        return []
    if mode == ExecutionMode.FAIL_FAST:
        return list(unfinished)
    return [job_id for job_id in unfinished if job_id not in infos or infos[job_id].state in PENDING_STATES]


def zenml_status(info: JobInfo | None) -> ExecutionStatus:
    if info is None:
        return ExecutionStatus.QUEUED
    if info.succeeded:
        return ExecutionStatus.COMPLETED
    if info.state == "CANCELLED":
        return ExecutionStatus.CANCELLED
    if info.finished:
        return ExecutionStatus.FAILED
    if info.state in ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "SUSPENDED"):
        return ExecutionStatus.RUNNING
    return ExecutionStatus.QUEUED


def _needs_gpu(job: SlurmJobConfig) -> bool:
    return job.gpus > 0 or "gpu" in (job.gres or "")


def _set_image_environment(environment: dict[str, str], app_dir: str, image: str, digest: str) -> None:
    """What a step inside an image reads: where the repository is mounted, and which image it runs in."""
    environment[SOURCE_ROOT_ENV] = app_dir
    environment["PTWIKI_IMAGE"] = image
    environment["PTWIKI_IMAGE_DIGEST"] = digest


class SlurmOrchestrator(BaseOrchestrator):
    """Submits a pipeline run as a DAG of SLURM jobs (see the module docstring)."""

    @property
    def config(self) -> SlurmOrchestratorConfig:
        return cast(SlurmOrchestratorConfig, self._config)

    @property
    def settings_class(self) -> type[SlurmOrchestratorSettings]:
        return SlurmOrchestratorSettings

    def get_orchestrator_run_id(self) -> str:
        try:
            return os.environ[ENV_RUN_ID]
        except KeyError:
            raise RuntimeError(f"{ENV_RUN_ID} is not set: only step jobs this orchestrator submitted have it") from None

    @property
    def supported_execution_modes(self) -> list[ExecutionMode]:
        return [ExecutionMode.FAIL_FAST, ExecutionMode.STOP_ON_FAILURE, ExecutionMode.CONTINUE_ON_FAILURE]

    # --- submission ---------------------------------------------------------------------------------
    def submit_pipeline(
        self,
        snapshot: PipelineSnapshotResponse,
        stack: Stack,
        base_environment: dict[str, str],
        step_environments: dict[str, dict[str, str]],
        placeholder_run: PipelineRunResponse | None = None,
    ) -> SubmissionResult | None:
        if snapshot.schedule:
            raise RuntimeError("the SLURM orchestrator runs pipelines now; schedule them with cron or scrontab instead")
        self._check_store()
        jobs_dir = Path(self.config.jobs_dir)
        if not jobs_dir.is_absolute():
            raise ValueError(f"jobs_dir {jobs_dir} must be an absolute path (on a filesystem every node sees)")
        run_id = str(placeholder_run.id) if placeholder_run else str(uuid4())
        run_dir = jobs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        steps = snapshot.step_configurations
        upstream = {name: [u for u in step.spec.upstream_steps if u in steps] for name, step in steps.items()}
        client = SlurmClient()
        submitted: dict[str, SubmittedJob] = {}
        specs: dict[str, tuple[JobSpec, dict[str, str]]] = {}
        mode = snapshot.pipeline_configuration.execution_mode
        extra = snapshot.pipeline_configuration.extra or {}
        detach = detached.DETACH_EXTRA in extra or not self.config.synchronous
        record: dict[str, Any] = {"run_id": run_id, "run_name": placeholder_run.name if placeholder_run else None,
                                  "pipeline": snapshot.pipeline_configuration.name, "execution_mode": mode.value,
                                  "detached": detach, "submitted_at": detached.now_iso()}
        try:
            for name in topological_order(upstream):
                spec, environment = self._job_spec(snapshot, stack, name, steps[name], run_id, run_dir,
                                                   step_environments[name])
                specs[name] = (spec, environment)
                after_ok = tuple(submitted[u].job_id for u in upstream[name])
                if spec.job.array_tasks > 1:  # the step's work first, as a job array (hpc.job_array)
                    array_id, array, array_command = job_array.submit_tasks(
                        client, spec, environment, steps[name].config.parameters, run_dir, after_ok,
                        self.config.job_name_prefix, {n: s.config.parameters for n, s in steps.items()})
                    submitted[array.step] = SubmittedJob(array.step, array_id, after_ok, tuple(array_command),
                                                         str(array.script_path), str(array.log_path),
                                                         str(array.env_path))
                    emit(f"[slurm] `{name}`'s work submitted as job array {array_id} of {spec.job.array_tasks} tasks")
                    after_ok = (*after_ok, array_id)
                write_env_file(spec.env_path, environment)
                spec.script_path.write_text(render_job_script(spec), encoding="utf-8")
                spec.script_path.chmod(0o700)
                command = submit_command(spec.script_path, after_ok)
                job_id = client.submit(command)
                submitted[name] = SubmittedJob(name, job_id, after_ok, tuple(command), str(spec.script_path),
                                               str(spec.log_path), str(spec.env_path))
                emit(f"[slurm] step `{name}` submitted as job {job_id}"
                     + (f" (after {', '.join(after_ok)})" if after_ok else ""))
            record["jobs"] = [asdict(job) for job in submitted.values()]
            if detach:  # follower jobs close the run when its jobs end (ptwiki_llm.hpc.detached)
                record["finish"] = extra.get(detached.DETACH_EXTRA)
                record = detached.submit_followers(client, run_dir, record, specs, self.config.job_name_prefix)
        except BaseException:
            client.cancel(job.job_id for job in submitted.values())
            raise
        detached.write_json(run_dir / detached.RECORD, record)
        metadata: dict[str, Any] = {
            METADATA_JOB_IDS: {name: job.job_id for name, job in submitted.items()},
            METADATA_JOBS_DIR: str(run_dir),
        }
        if detach:
            metadata[detached.METADATA_FOLLOWERS] = {role: f["job_id"] for role, f in record["followers"].items()}
            return SubmissionResult(metadata=metadata)
        wait = functools.partial(
            self._wait, list(submitted.values()), mode, placeholder_run.id if placeholder_run else None
        )
        return SubmissionResult(wait_for_completion=wait, metadata=metadata)

    def _check_store(self) -> None:
        store = GlobalConfiguration().store_configuration
        if self.config.require_server_store and store.type != StoreType.REST:
            raise RuntimeError(
                f"the ZenML store is {store.url}, but this orchestrator requires a ZenML server "
                "(require_server_store): SQLite must not be written from several nodes. Start infra/zenml-server "
                "and `zenml login` to it (or set ZENML_STORE_URL/ZENML_STORE_API_KEY), then re-run"
            )

    def _job_spec(
        self,
        snapshot: PipelineSnapshotResponse,
        stack: Stack,
        name: str,
        step: Step,
        run_id: str,
        run_dir: Path,
        step_environment: Mapping[str, str],
    ) -> tuple[JobSpec, dict[str, str]]:
        settings = cast(SlurmOrchestratorSettings, self.get_settings(step))
        job = settings.job()
        retries = step.config.retry.max_retries if step.config.retry else 0
        max_requeues = min(job.max_requeues, retries) if job.requeue else 0
        if job.requeue and retries < job.max_requeues:
            emit(f"[slurm] warning: step `{name}` may be requeued {retries} time(s), not {job.max_requeues}: each "
                 "requeue is a ZenML retry, so give the step retry=StepRetryConfig(max_retries="
                 f"{job.max_requeues}) (ptwiki-llm's runner does this for hpc.steps.<step>.requeue)")
        environment = self._environment(step_environment, run_id, job.env)
        entrypoint = [
            "-m", "zenml.entrypoints.entrypoint",
            *SlurmStepEntrypointConfiguration.get_entrypoint_arguments(step_name=name, snapshot_id=str(snapshot.id)),
        ]
        launch: ImageLaunch | None = None
        runtime = self.config.container_runtime
        if job.image and runtime == "podman":
            launch = self._podman_launch(stack, run_dir, job, job.image, environment)
            command = ("python", *entrypoint)
            workdir = str(run_dir)
        elif job.image and runtime == "apptainer":
            apptainer = self.config.apptainer
            digest = image_digest(Path(job.image), cache_dir=run_dir.parent / "images")
            _set_image_environment(environment, apptainer.app_dir, job.image, digest)
            nv = apptainer.nv if apptainer.nv is not None else _needs_gpu(job)
            launch = self._image_launch(stack, run_dir, job, apptainer, job.image, nv)
            command = ("python", *entrypoint)
            workdir = str(run_dir)
        else:
            environment[SOURCE_ROOT_ENV] = str(SOURCE_ROOT)
            command = (self.config.host_python or sys.executable, *entrypoint)
            workdir = str(SOURCE_ROOT)
        spec = JobSpec(
            step=name,
            name=job_name(self.config.job_name_prefix, name, run_id),
            run_id=run_id,
            job=job,
            command=command,
            workdir=workdir,
            script_path=run_dir / f"{name}.sbatch",
            log_path=run_dir / f"{name}.log",
            env_path=run_dir / f"{name}.env",
            image=launch,
            requeue_exit_code=self.config.requeue_exit_code,
            max_requeues=max_requeues,
            header=(f"pipeline {snapshot.pipeline_configuration.name}, snapshot {snapshot.id}",),
        )
        return spec, environment

    def _podman_launch(
        self, stack: Stack, run_dir: Path, job: SlurmJobConfig, image: str, environment: dict[str, str]
    ) -> ImageLaunch:
        """``podman run`` of the step in its OCI image, by the content id the image has now (recorded in MLflow)."""
        podman = self.config.podman
        digest = image_id(image, podman.executable, podman.global_args)
        _set_image_environment(environment, podman.app_dir, image, digest)
        # the network and the variable names read the environment complete with the image's variables
        return self._image_launch(stack, run_dir, job, podman, digest.removeprefix("sha256:"), _needs_gpu(job),
                                  runtime="podman", global_args=tuple(podman.global_args),
                                  network=job_network(podman.network, environment), env_names=tuple(environment))

    def _image_launch(self, stack: Stack, run_dir: Path, job: SlurmJobConfig, settings: Any, launch_image: str,
                      nv: bool, **runtime: Any) -> ImageLaunch:
        """The step inside an image, from the runtime's settings (``hpc.apptainer`` or ``hpc.podman``): the same
        binds (repository at ``app_dir``, the run's paths) and environment rules for both runtimes."""
        return ImageLaunch(
            image=launch_image,
            executable=settings.executable,
            app_dir=settings.app_dir,
            binds=tuple(bind_specs(SOURCE_ROOT, settings.app_dir, self._bind_paths(stack, run_dir, job.binds),
                                   settings.binds)),
            nv=nv,
            cleanenv=settings.cleanenv,
            extra_args=tuple(settings.extra_args),
            **runtime,
        )

    def _environment(
        self, step_environment: Mapping[str, str], run_id: str, job_env: Mapping[str, str]
    ) -> dict[str, str]:
        environment = dict(step_environment)
        environment.update(QUIET_ENV)
        if self.config.offline:
            environment.update(OFFLINE_ENV)
        environment[ENV_RUN_ID] = run_id
        commit = git_commit()
        if commit:  # the code the job runs is this checkout (bound at /app in an image without git)
            environment["PTWIKI_GIT_COMMIT"] = commit
        # a default (path-less) local artifact store resolves under the local stores path
        environment["ZENML_LOCAL_STORES_PATH"] = GlobalConfiguration().local_stores_path
        for name in self.config.env_passthrough:
            if name in os.environ:
                environment[name] = os.environ[name]
        environment.update(job_env)
        return environment

    def _bind_paths(self, stack: Stack, run_dir: Path, extra: Sequence[str]) -> list[Path]:
        """Host paths a step inside an image must see at the same location (those that exist)."""
        paths = [run_dir.parent, Path(GlobalConfiguration().local_stores_path)]
        artifact_path = stack.artifact_store.path
        if artifact_path and "://" not in artifact_path:
            paths.append(Path(artifact_path))
        store = GlobalConfiguration().store_configuration
        if store.type == StoreType.SQL and store.url.startswith("sqlite:///"):
            paths.append(Path(store.url.removeprefix("sqlite:///")).parent)
        paths += [Path(p) for p in extra]
        return [p.resolve() for p in paths if p.exists()]

    # --- waiting ------------------------------------------------------------------------------------
    def _wait(self, jobs: list[SubmittedJob], mode: ExecutionMode, pipeline_run_id: Any) -> None:
        client = SlurmClient()
        follower = LogFollower(emit)
        by_id = {job.job_id: job for job in jobs}
        seen: dict[str, str] = {}
        done: dict[str, JobInfo] = {}
        failures: list[JobFailure] = []
        cancelled: dict[str, str] = {}
        missing: dict[str, int] = {}
        stopping = False
        errors = 0
        try:
            while len(done) < len(jobs):
                try:
                    infos = client.states(list(by_id))
                    errors = 0
                except SlurmError as exc:  # a busy controller is no reason to abandon running jobs
                    errors += 1
                    if errors >= SLURM_ERROR_POLLS:
                        raise
                    emit(f"[slurm] warning: {exc}; asking again in {self.config.poll_seconds:.0f}s")
                    time.sleep(self.config.poll_seconds)
                    continue
                for job_id, job in by_id.items():
                    info = infos.get(job_id)
                    prefix = f"[{job.step}#{job_id}]"
                    follower.poll(prefix, Path(job.log))
                    if job_id in done:
                        continue
                    if info is None:
                        missing[job_id] = missing.get(job_id, 0) + 1
                        if missing[job_id] < UNKNOWN_JOB_POLLS:
                            continue
                        info = JobInfo(job_id, "UNKNOWN", "neither squeue nor sacct knows the job")
                    waiting = info.state in PENDING_STATES and info.reason not in ("", "None")
                    label = info.state + (f" ({info.reason})" if waiting else "")
                    if seen.get(job_id) != label:
                        seen[job_id] = label
                        emit(f"[slurm] step `{job.step}` job {job_id}: {label}")
                    if not info.finished and info.state != "UNKNOWN":
                        continue
                    follower.poll(prefix, Path(job.log), final=True)
                    done[job_id] = info
                    if info.succeeded:
                        continue
                    if info.state == "CANCELLED" and (stopping or not Path(job.log).exists()):
                        cancelled[job.step] = job_id  # a consequence of another job's failure
                        continue
                    log = job_array.failed_task_log(job.log)  # an array's: the failed task's own
                    failures.append(JobFailure(
                        job.step, job_id, info.state, info.exit_code, info.signal, info.reason, log,
                        tail(Path(log), self.config.log_tail_lines),
                    ))
                    if mode != ExecutionMode.CONTINUE_ON_FAILURE and not stopping:
                        stopping = True
                        victims = jobs_to_cancel(mode, infos, [j for j in by_id if j not in done])
                        emit(f"[slurm] {mode.value}: cancelling "
                             + (", ".join(f"`{by_id[j].step}` (job {j})" for j in victims) or "nothing")
                             + (" (running jobs finish)" if mode == ExecutionMode.STOP_ON_FAILURE else ""))
                        client.cancel(victims)
                if len(done) < len(jobs):
                    time.sleep(self.config.poll_seconds)
        except KeyboardInterrupt:
            if self.config.cancel_on_interrupt:
                emit(f"[slurm] interrupted: cancelling jobs {', '.join(by_id)}")
                client.cancel(by_id)
                done.update({job_id: JobInfo(job_id, "CANCELLED") for job_id in by_id if job_id not in done})
            else:
                emit(f"[slurm] interrupted: jobs {', '.join(j for j in by_id if j not in done)} keep running")
            raise
        finally:
            for job_id in done:  # a job that never started leaves its env file; a queued one still needs it
                Path(by_id[job_id].env_file).unlink(missing_ok=True)
        if failures:
            report = failure_report(failures, cancelled)
            self._mark_failed(pipeline_run_id, failures, report)
            raise SlurmRunFailed(report)

    def _mark_failed(self, pipeline_run_id: Any, failures: Sequence[JobFailure], report: str) -> None:
        """A job killed by SLURM (time limit, memory, node failure) never told ZenML: do it here."""
        if pipeline_run_id is None:
            return
        from zenml.client import Client
        from zenml.constants import STR_FIELD_MAX_LENGTH
        from zenml.orchestrators.publish_utils import publish_failed_step_run, publish_pipeline_run_status_update

        try:
            run = Client().get_pipeline_run(pipeline_run_id)
            for failure in failures:
                step_run = run.steps.get(failure.step)
                if step_run is not None and not step_run.status.is_finished:
                    publish_failed_step_run(step_run.id)
            if not Client().get_pipeline_run(pipeline_run_id).status.is_finished:  # ZenML wants the UUID itself
                # status_reason: ZenML refuses a longer one (and then leaves the run unmarked)
                publish_pipeline_run_status_update(run.id, ExecutionStatus.FAILED,
                                                   status_reason=report[:STR_FIELD_MAX_LENGTH])
        except Exception as exc:  # the jobs' failure is the error to show, not this bookkeeping
            emit(f"[slurm] warning: could not mark ZenML run {pipeline_run_id} failed: {exc}")

    # --- status and cancellation (``zenml pipeline runs refresh/stop``) -----------------------------
    @staticmethod
    def _job_ids(run: PipelineRunResponse) -> dict[str, str]:
        ids = run.run_metadata.get(METADATA_JOB_IDS)
        if not isinstance(ids, dict) or not ids:
            raise RuntimeError(f"run {run.id} has no SLURM job ids in its metadata (was it submitted by this flavor?)")
        return {str(k): str(v) for k, v in ids.items()}

    def fetch_status(
        self, run: PipelineRunResponse, include_steps: bool = False
    ) -> tuple[ExecutionStatus | None, dict[str, ExecutionStatus] | None]:
        ids = self._job_ids(run)
        try:
            infos = SlurmClient().states(list(ids.values()))
        except SlurmError:
            return None, None
        steps = {step: zenml_status(infos.get(job_id)) for step, job_id in ids.items()}
        statuses = set(steps.values())
        if ExecutionStatus.FAILED in statuses:
            overall = ExecutionStatus.FAILED
        elif statuses & {ExecutionStatus.RUNNING, ExecutionStatus.QUEUED}:
            overall = ExecutionStatus.RUNNING
        elif ExecutionStatus.CANCELLED in statuses:
            overall = ExecutionStatus.STOPPED
        else:
            overall = ExecutionStatus.COMPLETED
        return overall, (steps if include_steps else None)

    def _stop_run_gracefully(self, pipeline_run: PipelineRunResponse) -> None:
        """Jobs already running finish; queued ones are cancelled."""
        SlurmClient().cancel(self._job_ids(pipeline_run).values(), pending_only=True)

    def _stop_run_forcefully(self, pipeline_run: PipelineRunResponse) -> None:
        SlurmClient().cancel(self._job_ids(pipeline_run).values())
