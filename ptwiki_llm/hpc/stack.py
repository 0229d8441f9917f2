"""The ZenML stack for SLURM runs: register it idempotently and choose the stack a run uses.

``stack_up`` registers the ``ptwiki_slurm`` flavor, an orchestrator of that flavor, a local artifact
store on the shared filesystem and a stack of the two; a second call changes only what differs from
the config. ``select_stack`` runs before every pipeline run: ``hpc.orchestrator: slurm`` brings the
stack up and activates it, ``local`` re-activates ZenML's default stack if the SLURM one was active.
``pipeline_options`` turns ``hpc.slurm`` and ``hpc.steps`` into ZenML settings (and retries for
requeueable steps) for ``pipeline.with_options``. Call ``prepare_zenml`` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptwiki_llm.config import Config, SlurmJobConfig

DEFAULT_STACK = "default"


@dataclass
class StackReport:
    stack: str
    orchestrator: str
    artifact_store: str
    artifact_path: str
    jobs_dir: str
    store_url: str
    actions: list[str] = field(default_factory=list)  # what changed, e.g. "created orchestrator ptwiki-slurm"


def artifact_store_name(config: Config) -> str:
    return f"{config.hpc.stack}-artifacts"


def orchestrator_configuration(config: Config) -> dict[str, Any]:
    """The registered orchestrator component's configuration (cluster fields + default job options)."""
    from ptwiki_llm.hpc.flavor import CLUSTER_FIELDS

    hpc = config.hpc
    values: dict[str, Any] = {name: getattr(hpc, name) for name in CLUSTER_FIELDS}
    values["jobs_dir"] = str(config.expand(hpc.jobs_dir))
    values["apptainer"] = hpc.apptainer.model_dump(mode="json")
    values["podman"] = hpc.podman.model_dump(mode="json")
    values.update(hpc.slurm.model_dump(mode="json"))
    return {key: value for key, value in values.items() if value is not None}


def _ensure_flavor(report: StackReport) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from ptwiki_llm.hpc.flavor import FLAVOR_NAME, FLAVOR_SOURCE

    client = Client()
    try:
        existing = client.get_flavor_by_name_and_type(FLAVOR_NAME, StackComponentType.ORCHESTRATOR)
    except KeyError:
        existing = None
    if existing is not None and existing.source == FLAVOR_SOURCE:
        return
    if existing is not None:
        client.delete_flavor(existing.id)
    client.create_flavor(source=FLAVOR_SOURCE, component_type=StackComponentType.ORCHESTRATOR)
    report.actions.append(f"registered flavor {FLAVOR_NAME} ({FLAVOR_SOURCE})")


def _ensure_component(report: StackReport, kind: Any, name: str, flavor: str, configuration: dict[str, Any]) -> None:
    from zenml.client import Client

    client = Client()
    try:
        existing = client.get_stack_component(kind, name, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack_component(name=name, flavor=flavor, component_type=kind, configuration=configuration)
        report.actions.append(f"created {kind.value} {name}")
        return
    if existing.flavor_name != flavor:
        raise RuntimeError(
            f"a {kind.value} named {name!r} exists with flavor {existing.flavor_name!r}, not {flavor!r}: "
            f"rename hpc.stack or delete it (zenml {kind.value.replace('_', '-')} delete {name})"
        )
    current = {k: v for k, v in existing.configuration.items() if v is not None}
    if current != configuration:
        # keys the new configuration no longer sets go back to their defaults
        removals = {key: None for key in current if key not in configuration}
        client.update_stack_component(name, kind, configuration={**removals, **configuration})
        report.actions.append(f"updated {kind.value} {name}")


def stack_up(config: Config) -> StackReport:
    """Register (or bring up to date) the flavor, the components and the stack. Does not activate it."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StackComponentType

    from ptwiki_llm.hpc.flavor import FLAVOR_NAME

    hpc = config.hpc
    artifact_path = config.expand(hpc.artifact_store)
    artifact_path.mkdir(parents=True, exist_ok=True)
    jobs_dir = config.expand(hpc.jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    report = StackReport(
        stack=hpc.stack, orchestrator=hpc.stack, artifact_store=artifact_store_name(config),
        artifact_path=str(artifact_path), jobs_dir=str(jobs_dir),
        store_url=GlobalConfiguration().store_configuration.url,
    )
    _ensure_flavor(report)
    _ensure_component(report, StackComponentType.ORCHESTRATOR, report.orchestrator, FLAVOR_NAME,
                      orchestrator_configuration(config))
    _ensure_component(report, StackComponentType.ARTIFACT_STORE, report.artifact_store, "local",
                      {"path": str(artifact_path)})
    client = Client()
    wanted = {StackComponentType.ORCHESTRATOR: report.orchestrator,
              StackComponentType.ARTIFACT_STORE: report.artifact_store}
    try:
        stack = client.get_stack(hpc.stack, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack(name=hpc.stack, components=wanted)
        report.actions.append(f"created stack {hpc.stack}")
        return report
    have = {kind: components[0].name for kind, components in stack.components.items() if components}
    if have != wanted:
        client.update_stack(hpc.stack, component_updates={
            **{kind: [] for kind in have if kind not in wanted}, **wanted,
        })
        report.actions.append(f"updated stack {hpc.stack}")
    return report


def select_stack(config: Config) -> StackReport | None:
    """Activate the stack ``hpc.orchestrator`` asks for; returns the SLURM stack's report when it is used."""
    from zenml.client import Client

    client = Client()
    if config.hpc.orchestrator == "slurm":
        report = stack_up(config)
        if client.active_stack_model.name != config.hpc.stack:
            client.activate_stack(config.hpc.stack)
        return report
    if client.active_stack_model.name == config.hpc.stack:
        client.activate_stack(DEFAULT_STACK)
    return None


def bind_paths(config: Config) -> list[str]:
    """Host folders a step inside an image reads or writes: the workdir, asset folders, model store, services."""
    paths = [config.workdir, *config.asset_path, str(config.model_store), str(config.expand(config.hpc.services.dir))]
    return sorted(dict.fromkeys(paths))


def _settings(config: Config, job: SlurmJobConfig, binds: list[str]) -> Any:
    from ptwiki_llm.hpc.flavor import SlurmOrchestratorSettings

    values = job.model_dump()
    if config.hpc.container_runtime == "none":
        values["image"] = None  # every step on the host, whatever images the preset names
    elif job.image and config.hpc.container_runtime == "apptainer":
        values["image"] = str(config.expand(job.image))  # a .sif path; a podman image is a reference, kept as is
    values["binds"] = sorted(dict.fromkeys([*(str(config.expand(b)) for b in job.binds), *binds]))
    return SlurmOrchestratorSettings(**values)


def step_names(pipeline: Any, **run_kwargs: Any) -> list[str]:
    """The step invocation names a pipeline would run with these arguments (without running it)."""
    probe = pipeline.copy()
    probe.prepare(**run_kwargs)
    return sorted(probe.invocations)


def pipeline_options(config: Config, names: list[str]) -> dict[str, Any]:
    """``with_options`` arguments: job options for the run and for each overridden step present in ``names``."""
    hpc = config.hpc
    binds = bind_paths(config)
    options: dict[str, Any] = {"settings": {"orchestrator": _settings(config, hpc.slurm, binds)}}
    steps: dict[str, Any] = {}
    for name in names:
        job = hpc.job_for(name)
        if name not in hpc.steps and not job.requeue:
            continue
        entry: dict[str, Any] = {"settings": {"orchestrator": _settings(config, job, binds)}}
        if job.requeue and job.max_requeues > 0:
            # each requeue of the job is a new attempt of the step in ZenML's store
            entry["retry"] = {"max_retries": job.max_requeues}
        steps[name] = entry
    if steps:
        options["steps"] = steps
    return options


def run_options(config: Config, pipeline: Any, run_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Choose the stack for a run and return the ``with_options`` arguments it needs ({} for local)."""
    if select_stack(config) is None:
        return {}
    return pipeline_options(config, step_names(pipeline, **run_kwargs))
