"""Find runs left RUNNING by processes that are gone (kill -9, OOM, node failure) and close them.

Every run records its owner (``run_owner.current_owner``): ZenML pipeline runs in their
configuration's ``extra`` (``OWNER_EXTRA``), MLflow runs in the ``ptwiki.owner`` tag. A run whose
owner no longer exists is marked FAILED in ZenML (with its unfinished steps) and KILLED in MLflow,
with the reason "process gone". A run whose owner this host cannot check (another node, no SLURM
tools) is left as it is. A run the SLURM orchestrator submitted (its job ids in the run's metadata) lives
while any of its jobs is queued or running, whatever became of the process that submitted it (a
detached run's submitter exits at once). Called at the start of every run (with the workdir lock held) and usable
by a ``status`` command; it never creates a store that does not exist yet.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from ptwiki_llm.config import Config
from ptwiki_llm.run_owner import describe, owner_alive

logger = logging.getLogger(__name__)

OWNER_EXTRA = "ptwiki_owner"
END_REASON_TAG = "ptwiki.end_reason"
REASON = "process gone"


@dataclass
class StaleRun:
    system: str  # "zenml" or "mlflow"
    run_id: str
    name: str
    owner: dict[str, Any]
    marked: bool

    def __str__(self) -> str:
        return f"{self.system} run {self.name} ({self.run_id}) of {describe(self.owner)}: {REASON}"


def find_stale_runs(config: Config, mark: bool = True) -> list[StaleRun]:
    """Runs of this workdir's stores left RUNNING by a dead process; ``mark`` closes them."""
    stale: list[StaleRun] = []
    zenml_alive: dict[str, bool] = {}
    if _zenml_store_exists(config):
        stale += _zenml_stale(config, mark, zenml_alive)
    from ptwiki_llm.tracking import store_exists

    if store_exists(config):
        stale += _mlflow_stale(config, mark, zenml_alive)
    for run in stale:
        logger.warning("%s %s", "closed" if run.marked else "found", run)
    return stale


def _zenml_store_exists(config: Config) -> bool:
    return bool(os.environ.get("ZENML_STORE_URL")) or (config.zenml_config_path / "config.yaml").is_file()


def _zenml_stale(config: Config, mark: bool, alive_by_run: dict[str, bool]) -> list[StaleRun]:
    from ptwiki_llm.zenml_env import prepare_zenml

    prepare_zenml(config)
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate
    from zenml.utils.time_utils import utc_now

    client = Client()
    found: list[StaleRun] = []
    for run in client.list_pipeline_runs(sort_by="desc:created", size=100, hydrate=True).items:
        if ExecutionStatus(run.status).is_finished:
            continue
        owner = (run.config.extra or {}).get(OWNER_EXTRA)
        alive = _alive(owner, run.run_metadata)
        alive_by_run[str(run.id)] = alive is not False
        if alive is not False:
            continue
        if mark:
            for step in run.steps.values():
                if not ExecutionStatus(step.status).is_finished:
                    client.zen_store.update_run_step(
                        step.id, StepRunUpdate(status=ExecutionStatus.FAILED, end_time=utc_now()))
            client.zen_store.update_run(run.id, PipelineRunUpdate(
                status=ExecutionStatus.FAILED, status_reason=f"{REASON}: {describe(owner)}"))
        found.append(StaleRun("zenml", str(run.id), run.name, owner, mark))
    return found


def _alive(owner: dict[str, Any] | None, metadata: dict[str, Any]) -> bool | None:
    """The owner process runs, or one of the run's SLURM jobs is queued or running."""
    from ptwiki_llm.hpc.detached import METADATA_FOLLOWERS, jobs_alive
    from ptwiki_llm.hpc.orchestrator import METADATA_JOB_IDS

    by_owner = owner_alive(owner) if owner else None
    job_ids = [str(job_id) for key in (METADATA_JOB_IDS, METADATA_FOLLOWERS)
               for job_id in (metadata.get(key) or {}).values()]
    if not job_ids or by_owner is True:
        return by_owner
    return jobs_alive(job_ids)


def _mlflow_stale(config: Config, mark: bool, zenml_alive: dict[str, bool]) -> list[StaleRun]:
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking

    experiment_id = tracking.setup(config)
    client = MlflowClient()
    found: list[StaleRun] = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500):
        tags = run.data.tags
        try:
            owner = json.loads(tags.get(tracking.OWNER_TAG, "null"))
        except ValueError:
            owner = None
        if not owner or owner_alive(owner) is not False:
            continue
        # a pipeline's parent run lives as long as its ZenML run, whichever process created it
        pipeline_run = tags.get(tracking.PIPELINE_RUN_TAG)
        if pipeline_run and zenml_alive.get(pipeline_run):
            continue
        if mark:
            client.set_tag(run.info.run_id, END_REASON_TAG, f"{REASON}: {describe(owner)}")
            client.set_terminated(run.info.run_id, status="KILLED")
        found.append(StaleRun("mlflow", run.info.run_id, run.info.run_name or "", owner, mark))
    return found
