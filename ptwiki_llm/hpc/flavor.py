"""The ZenML flavor ``ptwiki_slurm``: its settings (per step job options) and component config.

Both are derived from the pydantic models in ``ptwiki_llm.config`` so every default stays there:
the settings have the fields of ``SlurmJobConfig``; the component config adds the cluster-wide fields
of ``HpcConfig`` named in ``CLUSTER_FIELDS``. Registered with
``Client().create_flavor("ptwiki_llm.hpc.flavor.SlurmOrchestratorFlavor", ORCHESTRATOR)`` by
``ptwiki-llm stack up``. Importing this module stays light: the implementation loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import create_model
from zenml.config.base_settings import BaseSettings
from zenml.orchestrators import BaseOrchestratorConfig, BaseOrchestratorFlavor

from ptwiki_llm.config import HpcConfig, SlurmJobConfig

if TYPE_CHECKING:
    from ptwiki_llm.hpc.orchestrator import SlurmOrchestrator

FLAVOR_NAME = "ptwiki_slurm"
FLAVOR_SOURCE = "ptwiki_llm.hpc.flavor.SlurmOrchestratorFlavor"

# HpcConfig fields stored in the registered orchestrator component (the rest is per run or per step).
CLUSTER_FIELDS = (
    "jobs_dir", "job_name_prefix", "poll_seconds", "synchronous", "cancel_on_interrupt", "log_tail_lines",
    "require_server_store", "offline", "requeue_exit_code", "host_python", "env_passthrough", "apptainer",
    "container_runtime", "podman",
)


def _fields(model: type, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    fields = model.model_fields  # type: ignore[attr-defined]
    return {name: (fields[name].annotation, fields[name]) for name in (names or tuple(fields))}


_SettingsFields: Any = create_model("_SlurmJobSettingsFields", __base__=BaseSettings, **_fields(SlurmJobConfig))


class SlurmOrchestratorSettings(_SettingsFields):
    """Per step (or pipeline) job options: ``@step(settings={"orchestrator": SlurmOrchestratorSettings(gpus=4)})``."""

    def job(self) -> SlurmJobConfig:
        return SlurmJobConfig.model_validate(self.model_dump(include=set(SlurmJobConfig.model_fields)))


_ConfigFields: Any = create_model(
    "_SlurmOrchestratorConfigFields",
    __base__=(BaseOrchestratorConfig, SlurmOrchestratorSettings),
    **_fields(HpcConfig, CLUSTER_FIELDS),
)


class SlurmOrchestratorConfig(_ConfigFields):
    """The registered component: cluster-wide settings plus default job options."""

    @property
    def is_synchronous(self) -> bool:
        return bool(self.synchronous)

    @property
    def is_local(self) -> bool:
        return True  # the jobs share this machine's filesystem (a cluster's shared FS)

    @property
    def handles_step_retries(self) -> bool:
        # A step's retries are SLURM requeues of its job (same job id, so dependents keep waiting);
        # ZenML must not also retry inside a job that is about to hit its time limit.
        return True


class SlurmOrchestratorFlavor(BaseOrchestratorFlavor):
    @property
    def name(self) -> str:
        return FLAVOR_NAME

    @property
    def docs_url(self) -> str | None:
        return None

    @property
    def sdk_docs_url(self) -> str | None:
        return None

    @property
    def config_class(self) -> type[SlurmOrchestratorConfig]:
        return SlurmOrchestratorConfig

    @property
    def implementation_class(self) -> type[SlurmOrchestrator]:
        from ptwiki_llm.hpc.orchestrator import SlurmOrchestrator

        return SlurmOrchestrator
