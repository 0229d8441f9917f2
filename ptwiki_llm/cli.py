"""``ptwiki-llm``: run the pipeline, or parts of it, and say where everything is."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ptwiki_llm import __version__
from ptwiki_llm.cli_entry import CliGroup, fix_flag_help
from ptwiki_llm.config import Config
from ptwiki_llm.errors import EXIT_BAD_SETUP, ConfigError, UserError
from ptwiki_llm.overrides import parse_overrides
from ptwiki_llm.provenance import SOURCE_ROOT

if TYPE_CHECKING:
    from ptwiki_llm.evaluation.run import EvaluationReport

# user errors: one line where the command runs (cli_entry); bugs keep their traceback, without locals (secrets)
app = typer.Typer(cls=CliGroup, no_args_is_help=True, add_completion=False, help=__doc__,
                  pretty_exceptions_show_locals=False)
fix_flag_help()
console = Console()

DEFAULT_CONFIG = Path("configs/local.yaml")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML preset (default: configs/local.yaml when present)"),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a key, e.g. --set data.max_articles=200 (repeatable)"),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="re-run every step")]
HereOption = Annotated[bool, typer.Option(
    "--here", help="run the steps in this process, not through hpc.orchestrator (never on a login node)")]


def _show_version(value: bool) -> None:
    if value:
        print(f"ptwiki-llm {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="print the version and exit")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of every error (or PTWIKI_DEBUG=1)")] = False,
) -> None:
    """``ptwiki-llm``: run the pipeline, or parts of it, and say where everything is."""
    # --debug is taken out of the command line before parsing (cli_entry), so it works after the command too


def _load(config_path: Path | None, sets: list[str] | None, no_cache: bool = False) -> Config:
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    overrides = parse_overrides(sets)
    if no_cache:
        overrides.setdefault("zenml", {})["enable_cache"] = False
    from ptwiki_llm.hpc.services import apply_services
    from ptwiki_llm.preflight import load_checked_config

    try:
        # hpc.services: the servers' URLs from infra/ (before zenml is imported), for every command
        return apply_services(load_checked_config(config_path, overrides))
    except UserError as exc:
        exc.exit_code = EXIT_BAD_SETUP  # nothing has run yet
        raise


@contextmanager
def _workdir_session(config: Config, command: str, checks: str | None = None) -> Iterator[None]:
    """Commands that write: pre-flight checks, then the workdir lock, then close runs a dead process left RUNNING."""
    from ptwiki_llm.preflight import preflight
    from ptwiki_llm.stale_runs import find_stale_runs
    from ptwiki_llm.workdir_lock import WorkdirLock

    if checks:
        preflight(config, checks)
    if config.hpc.orchestrator == "slurm":  # a detached run of this workdir holds it while its jobs run
        from ptwiki_llm.hpc.run_view import refuse_if_busy

        refuse_if_busy(config.expand(config.hpc.jobs_dir))
    with WorkdirLock(config.workdir, command) as lock:
        if lock.abandoned:
            console.print(f"[yellow]note:[/yellow] the previous run in this workdir (pid {lock.abandoned.get('pid')}, "
                          f"started at {lock.abandoned.get('started_at')}) ended without finishing", markup=True)
        for stale in find_stale_runs(config):
            console.print(f"marked {stale}", markup=False, highlight=False)
        yield


def _in_process(config: Config, here: bool) -> Config:
    """``--here``: every step in this process (ZenML's local orchestrator), whatever hpc.orchestrator says."""
    if not here:
        return config
    return config.model_copy(update={"hpc": config.hpc.model_copy(update={"orchestrator": "local"})})


def _run(which: str, config: Config, detach: bool = False) -> None:
    if detach and config.hpc.orchestrator != "slurm":
        raise ConfigError(f"--detach needs a SLURM preset: {config.preset} runs its steps in this process "
                          f"(hpc.orchestrator={config.hpc.orchestrator})", "Use -c configs/local-slurm.yaml or atena")
    console.print(f"[bold]ptwiki-llm[/bold] {which} pipeline, preset [cyan]{config.preset}[/cyan], "
                  f"workdir {config.workdir}")
    with _workdir_session(config, "run" if which == "full" else which, which):
        from ptwiki_llm.runner import run_pipeline  # after the pre-flight checks: it imports pyarrow, numpy

        summary = run_pipeline(config, which, detach=detach)
    if summary.status == "submitted":
        _print_submitted(summary, config)
        return
    console.print(f"ZenML run [cyan]{summary.run_name}[/cyan]: {summary.status}"
                  + (f" (served from cache: {', '.join(summary.cached_steps)})" if summary.cached_steps else ""))
    _print_outputs(summary.outputs, config, summary.mlflow_parent_run_id)


def _print_outputs(outputs: dict[str, Any], config: Config, mlflow_run: str | None) -> None:
    table = Table(title="Where everything went", show_lines=False)
    table.add_column("what")
    table.add_column("where / value", overflow="fold")
    if "articles" in outputs:
        articles = outputs["articles"]
        counts = articles.counts
        table.add_row("articles (parquet shards)", articles.dir)
        table.add_row("ingest manifest", str(articles.manifest_path))
        table.add_row("ingest counts", f"read {counts.read}, kept {counts.kept}, skipped {counts.skipped}")
    if "validated" in outputs:
        validated = outputs["validated"]
        table.add_row("quarantine", validated.quarantine)
        table.add_row("Data Docs", str(validated.data_docs_index))
        table.add_row("validation", f"quarantined {validated.counts.quarantined}, accepted {validated.counts.accepted}")
    if "formatted" in outputs:
        formatted = outputs["formatted"]
        table.add_row("train JSONL", formatted.train)
        table.add_row("eval JSONL", formatted.eval)
        examples = formatted.example_count
        table.add_row("examples", f"train {examples.train}, eval {examples.eval}"
                      + (f"; ~{formatted.estimated_tokens:,} tokens" if formatted.estimated_tokens else ""))
    if "trained" in outputs:  # train -> register
        trained = outputs["trained"]
        table.add_row("adapter (run folder)", trained.adapter_dir)
        base, tuned = trained.heldout.base, trained.heldout.tuned
        if base and tuned:
            table.add_row("held-out perplexity", f"{base.perplexity:.2f} -> {tuned.perplexity:.2f} "
                          f"(bits/byte {base.bits_per_byte:.3f} -> {tuned.bits_per_byte:.3f})")
    if "registered" in outputs:
        registered = outputs["registered"]
        table.add_row("registered adapter", f"{registered.alias_uri} (version {registered.version})")
    if "rag_index" in outputs:
        index = outputs["rag_index"]
        table.add_row("RAG index", f"{index.backend} {index.location}, collection {index.collection}, "
                      f"{index.counts.store_count} passages")
    if "evaluation" in outputs:
        evaluation = outputs["evaluation"]
        table.add_row("evaluation report", f"{evaluation.report} (HTML: {evaluation.report_html})")
        gate = evaluation.gate
        table.add_row("promotion gate", gate.outcome + (" (champion moved)" if gate.applied else ""))
    table.add_row("MLflow", f"{config.mlflow_tracking_uri}" + (f" (parent run {mlflow_run})" if mlflow_run else ""))
    table.add_row("ZenML store", str(config.zenml_config_path))
    console.print(table)
    if "evaluation" in outputs:
        _print_evaluation(outputs["evaluation"])
    if config.mlflow_tracking_uri.startswith("sqlite:"):
        console.print(f"Open the MLflow UI: [bold]mlflow ui --backend-store-uri {config.mlflow_tracking_uri}[/bold]")


DetachOption = Annotated[bool, typer.Option(
    "--detach", help="SLURM presets: submit the jobs and return with the run's name (see `status`, `logs`, `cancel`)")]


@app.command()
def run(config: ConfigOption = None, set_: SetOption = None, no_cache: NoCacheOption = False,
        detach: DetachOption = False) -> None:
    """Run the whole pipeline: ingest -> validate -> format -> train -> register, index, evaluate."""
    _run("full", _load(config, set_, no_cache), detach)


@app.command()
def data(config: ConfigOption = None, set_: SetOption = None, no_cache: NoCacheOption = False,
         detach: DetachOption = False) -> None:
    """Run the data steps: ingest -> validate -> format."""
    _run("data", _load(config, set_, no_cache), detach)


# --- detached SLURM runs: status, logs, cancel (ptwiki_llm/hpc/run_view.py) -----------------------

RunArgument = Annotated[str | None, typer.Argument(help="run name or id (or a unique prefix); default: the newest")]


def _print_submitted(summary: Any, config: Config) -> None:
    from ptwiki_llm.hpc.run_view import find_run, view
    from ptwiki_llm.hpc.slurm import SlurmClient

    run_dir = find_run(config.expand(config.hpc.jobs_dir), summary.run_id)
    _print_run(view(run_dir, SlurmClient()))
    name = summary.run_name
    console.print(f"submitted: run [cyan]{name}[/cyan] (ZenML run {summary.run_id}"
                  + (f", MLflow parent run {summary.mlflow_parent_run_id}" if summary.mlflow_parent_run_id else "")
                  + "); its jobs run on without this process", highlight=False)
    console.print(f"follow it: ptwiki-llm status {name} [--wait] | ptwiki-llm logs {name} STEP -f | "
                  f"ptwiki-llm cancel {name}", markup=False, highlight=False)


def _print_run(run: Any) -> None:
    table = Table(title=f"run {run.name} ({run.record.get('pipeline')}, {run.record.get('execution_mode')}): "
                        f"{run.status}")
    for column in ("step", "job", "state", "elapsed", "exit", "log"):
        table.add_column(column, overflow="fold")
    for row in [*run.steps, *run.followers]:
        state = row.state + (f" ({row.reason})" if row.reason else "") + (f"; {row.note}" if row.note else "")
        table.add_row(row.step, row.job_id, Text(state), row.elapsed,
                      "" if row.exit_code is None else str(row.exit_code), Text(row.log))
    console.print(table)
    if run.closed:
        console.print(f"closed {run.closed['status']} by {run.closed['closed_by']} at {run.closed['closed_at']}"
                      + (f": {run.closed['reason']}" if run.closed["reason"] else ""), markup=False, highlight=False)
        for note in run.closed.get("notes", []):
            console.print(f"warning: {note}", markup=False, highlight=False)


def _slurm_cli(config: Config) -> Any:
    from ptwiki_llm.errors import ServiceUnavailableError
    from ptwiki_llm.hpc.slurm import SlurmClient

    if not SlurmClient.available():
        raise ServiceUnavailableError("sbatch/squeue are not on PATH", "Run this on a SLURM login node")
    return SlurmClient()


@app.command()
def status(
    run_ref: RunArgument = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="poll until the run is closed; exit 1 unless FINISHED")] = False,
    lost_after: Annotated[float, typer.Option(
        "--lost-after", min=0, help="seconds a job SLURM does not know may stay UNKNOWN before it counts as LOST")
    ] = 120.0,
) -> None:
    """A SLURM run's jobs: id, state, elapsed time, exit code and log; closes the run once its jobs ended."""
    import time

    from ptwiki_llm.hpc.run_view import close_if_ended, find_run, view
    from ptwiki_llm.stale_runs import find_stale_runs
    from ptwiki_llm.zenml_env import prepare_zenml

    cfg = _load(config, set_)
    run_dir = find_run(cfg.expand(cfg.hpc.jobs_dir), run_ref)
    client = _slurm_cli(cfg)
    prepare_zenml(cfg)
    for stale in find_stale_runs(cfg):  # runs whose driver died and whose jobs all ended
        console.print(f"marked {stale}", markup=False, highlight=False)
    ended_at: float | None = None
    while True:  # the finish job closes the run; status does when it does not within --lost-after of the end
        run = view(run_dir, client, lost_after)
        ended_at = (ended_at or time.monotonic()) if run.ended else None
        run = close_if_ended(run, client, cfg, force=ended_at is not None and time.monotonic() - ended_at >= lost_after)
        if run.closed or not wait:
            break
        time.sleep(cfg.hpc.poll_seconds)
    _print_run(run)
    if run.status == "ENDED":
        console.print("every step job ended; the finish job closes the run (or `status --wait`)", markup=False)
    if wait and run.status != "FINISHED":
        raise typer.Exit(1)


@app.command()
def logs(
    run_ref: Annotated[str, typer.Argument(help="run name or id (or a unique prefix)")],
    step: Annotated[str, typer.Argument(help="a step (ingest, train, ...) or a follower job (finish, reap)")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the job ends")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Print a step job's log (``-f``: as it grows, until the job ends)."""
    from ptwiki_llm.hpc.run_view import find_run, follow_log, job_of, view

    cfg = _load(config, set_)
    run_dir = find_run(cfg.expand(cfg.hpc.jobs_dir), run_ref)
    client = _slurm_cli(cfg)
    if follow:
        row = follow_log(run_dir, step, client, lambda line: console.print(line, markup=False, highlight=False),
                         cfg.hpc.poll_seconds)
        console.print(f"[dim]job {row.job_id} {row.state}[/dim]")
        return
    row = job_of(view(run_dir, client), step)
    pattern = Path(row.log)  # a job array's tasks write one log each (%a: the task)
    paths = sorted(pattern.parent.glob(pattern.name.replace("%a", "*"))) if "%a" in pattern.name else [pattern]
    if not any(path.is_file() for path in paths):
        raise UserError(f"step {step} (job {row.job_id}, {row.state}) has no log yet at {pattern}",
                        f"`ptwiki-llm logs {run_ref} {step} -f` waits for it")
    for path in paths:
        if len(paths) > 1:
            console.print(f"==> {path} <==", markup=False, highlight=False)
        console.print(path.read_text(encoding="utf-8", errors="replace"), markup=False, highlight=False, end="")


@app.command()
def cancel(
    run_ref: Annotated[str, typer.Argument(help="run name or id (or a unique prefix)")],
    config: ConfigOption = None,
    set_: SetOption = None,
    wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for the jobs to end")] = 60.0,
) -> None:
    """scancel every job of a SLURM run (never requeued); the run is closed KILLED once they end."""
    from ptwiki_llm.hpc.run_view import cancel as cancel_run
    from ptwiki_llm.hpc.run_view import find_run
    from ptwiki_llm.zenml_env import prepare_zenml

    cfg = _load(config, set_)
    run_dir = find_run(cfg.expand(cfg.hpc.jobs_dir), run_ref)
    client = _slurm_cli(cfg)
    prepare_zenml(cfg)
    run = cancel_run(run_dir, client, wait, cfg.hpc.poll_seconds, cfg)
    _print_run(run)
    if not run.closed:
        console.print(f"the jobs are still ending (SIGTERM: a step may checkpoint within KillWait); the finish job "
                      f"closes the run, or `ptwiki-llm status {run.name}`", markup=False, highlight=False)


@app.command()
def info(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show the resolved config and where every input and artifact is."""
    from ptwiki_llm.assets import hub_download_planned, resolve_data_source
    from ptwiki_llm.models.refs import local_model_dir
    from ptwiki_llm.rag.pointer import pointer_path

    cfg = _load(config, set_)
    try:
        source: str = "(download on first run)" if hub_download_planned(cfg) else str(resolve_data_source(cfg))
    except UserError as exc:
        source = f"NOT FOUND: {exc}"
    locations = {
        "workdir": cfg.workdir,
        "asset_path": os.pathsep.join(cfg.asset_path) or "(unset: set PTWIKI_ASSET_PATH)",
        "data source": source,
        "base model": str(local_model_dir(cfg.models.base, cfg) or f"not staged ({cfg.models.base.hub_id})"),
        "embedder": str(local_model_dir(cfg.models.embedder, cfg) or f"not staged ({cfg.models.embedder.hub_id})"),
        "model store": str(cfg.model_store),
        "articles": str(cfg.data_dir / "articles"),
        "validation (quarantine, Data Docs)": str(cfg.data_dir / "validated"),
        "formatted JSONL": str(cfg.data_dir / "formatted"),
        "MLflow tracking": cfg.mlflow_tracking_uri,
        "MLflow artifacts": str(cfg.mlflow_artifact_location),
        "ZenML store": str(cfg.zenml_config_path),
        "training runs (checkpoints, adapters)": str(cfg.expand(cfg.train.run_dir)),
        "registered model": f"{cfg.registry.model_name} (MLflow registry)",
        "RAG store": _rag_store_location(cfg),
        "RAG current collection": str(pointer_path(cfg)),
    }
    if as_json:
        console.print_json(json.dumps({"config": cfg.to_dict(), "locations": locations}))
        return
    console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    table = Table(title=f"ptwiki-llm locations (preset {cfg.preset})")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    for what, where in locations.items():
        table.add_row(what, where)
    console.print(table)


def _rag_store_location(cfg: Config) -> str:
    store = cfg.rag.store
    if store.backend == "weaviate":
        return f"weaviate {store.weaviate.url or '$' + store.weaviate.url_env}"
    return f"lancedb {cfg.expand(store.lancedb_uri)}"


# --- RAG: index and ask (ptwiki_llm/rag) ---------------------------------------------------------


@app.command()
def index(
    config: ConfigOption = None,
    set_: SetOption = None,
    no_cache: NoCacheOption = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="index only the first N accepted articles")] = None,
    here: HereOption = False,
) -> None:
    """Index the validated articles into the vector store (the data steps first, cached), as a pipeline
    through hpc.orchestrator: on a SLURM preset every step is a job."""
    cfg = _in_process(_load(config, set_, no_cache), here)
    console.print(f"[bold]ptwiki-llm[/bold] index, preset [cyan]{cfg.preset}[/cyan], backend "
                  f"[cyan]{cfg.rag.store.backend}[/cyan], orchestrator {cfg.hpc.orchestrator}, workdir {cfg.workdir}")
    with _workdir_session(cfg, "index", "index"):
        from ptwiki_llm.runner import run_pipeline  # after the pre-flight checks: it imports pyarrow, numpy

        summary = run_pipeline(cfg, "index", max_articles=limit)
        result = summary.outputs["rag_index"]
    counts = result.counts
    table = Table(title="Vector index")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("backend / location", f"{result.backend} {result.location}")
    table.add_row("collection", result.collection)
    table.add_row("embedder", f"{result.embedder} ({result.dimension} dims)")
    table.add_row("articles", f"{counts.articles} ({counts.quarantined_excluded} quarantined left out)")
    table.add_row("chunks", f"{counts.chunks} (dropped: {counts.short_dropped} too short, "
                  f"{counts.duplicates_dropped} duplicates)")
    if "index" in summary.cached_steps:
        table.add_row("this run", "served from ZenML's cache: the store is as the last index run left it")
    else:
        table.add_row("this run", f"embedded {counts.embedded}, already indexed {counts.already_indexed}")
    table.add_row("objects in the collection", str(counts.store_count))
    console.print(table)


ASK_EXAMPLES = """Examples (questions the default sample's index answers; `ptwiki-llm ask --examples` lists more):

    ptwiki-llm ask "Onde nasceu Walter D'Ávila?" --rag
    ptwiki-llm ask "Em que ano morreu Walter D'Ávila?" --rag --adapter challenger
"""


def _print_sources(comparison: Any) -> None:
    if not comparison.hits:
        return
    console.print("[bold]Fontes[/bold]")
    for number, (hit, relevance) in enumerate(zip(comparison.hits, comparison.relevance, strict=True), 1):
        section = f" — {hit.chunk.section}" if hit.chunk.section else ""
        console.print(f"[{number}] {hit.chunk.title}{section}  {hit.chunk.url}  (relevance {relevance:.3f})",
                      markup=False, highlight=False)
    if comparison.not_found:
        console.print(f"(best relevance {max(comparison.relevance, default=0):.3f} is under "
                      f"rag.answer.not_found_below = {comparison.threshold}, calibrated on FaQuAD: the sources "
                      "do not hold the answer)", markup=False, highlight=False)


def _evidence_lines(answer: Any) -> str:
    return "\n".join(f"[{e.source}] \u201c{e.sentence}\u201d" for e in answer.evidence)


@app.command(epilog=ASK_EXAMPLES)
def ask(
    question: Annotated[str | None, typer.Argument(help="a question in Portuguese")] = None,
    rag: Annotated[bool, typer.Option("--rag", help="answer from retrieved Wikipedia passages")] = False,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", help="use the registered adapter with this alias: champion or challenger")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="passages to retrieve (default rag.retrieval.k)")] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="hybrid (BM25 + vector) retrieval")] = False,
    examples: Annotated[bool, typer.Option(
        "--examples", help="list questions about indexed articles that retrieval finds, and exit")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Answer a question with the base model (or an adapter); with --rag, from retrieved sources, with evidence."""
    from ptwiki_llm.rag.answering import Answerer

    cfg = _load(config, set_)
    if examples:
        _print_examples(cfg)
        return
    if question is None:
        raise typer.BadParameter("give a question (or --examples to list some)")
    if adapter is not None and adapter not in ("champion", "challenger"):
        raise typer.BadParameter("--adapter must be 'champion' or 'challenger'")
    if hybrid and not rag:
        raise typer.BadParameter("--hybrid needs --rag")
    answerer = Answerer(cfg)
    arm = answerer.arm({"challenger": "ft", "champion": "champion"}.get(adapter or "", "base"), rag)
    comparison = answerer.answer(question, [arm], k=k, hybrid=hybrid)
    (answer,) = comparison.answers
    console.print(answer.text, markup=False, highlight=False)
    if answer.evidence:
        console.print("\n[bold]Evidência[/bold]")
        console.print(_evidence_lines(answer), markup=False, highlight=False)
    if rag:
        console.print()
        _print_sources(comparison)


def _print_examples(cfg: Config) -> None:
    from ptwiki_llm.rag.examples import example_questions

    found = example_questions(cfg)
    console.print("Questions about indexed articles (retrieval ranks the article first):")
    for example in found:
        console.print(f'  ptwiki-llm ask "{example.question}" --rag    [dim]# {example.title}[/dim]')


# --- models: staging and the adapter registry (ptwiki_llm/models/, ptwiki_llm/registry.py) ------

models_app = typer.Typer(no_args_is_help=True, help="Stage base models; list, show and promote registered adapters.")
app.add_typer(models_app, name="models")


@models_app.command("stage")
def models_stage(
    name: Annotated[str, typer.Argument(help="'base', 'embedder' or a configured model name")] = "base",
    force: Annotated[bool, typer.Option("--force", help="stage again even if already staged")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Put a model in the model store: convert a GGUF, link a local folder, or (online) download a Hub id."""
    from ptwiki_llm.models.refs import model_ref
    from ptwiki_llm.models.staging import stage_manifest, stage_model

    cfg = _load(config, set_)
    try:
        ref = model_ref(cfg, name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    with _workdir_session(cfg, "models stage"):
        folder = stage_model(cfg, ref, force=force)
    manifest = stage_manifest(ref, cfg) or {}
    console.print(f"staged [cyan]{ref.name}[/cyan] in {folder} (from {manifest.get('source', {}).get('kind')}, "
                  f"weights sha256 {manifest.get('weights_sha256', '?')[:16]}...)")


def _registry_call(function: Any, *args: Any) -> Any:
    from ptwiki_llm.errors import PrerequisiteMissingError
    from ptwiki_llm.registry import RegistryError
    from ptwiki_llm.tracking import store_exists

    cfg = args[0]
    if not store_exists(cfg):  # read-only: never create an MLflow database to find it empty
        raise PrerequisiteMissingError(f"no MLflow database at {cfg.mlflow_tracking_uri} yet, so no registered "
                                       "adapter", "Run `ptwiki-llm run` first")
    try:
        return function(*args)
    except RegistryError as exc:
        exc.exit_code = EXIT_BAD_SETUP  # a version or alias that is not there: the argument is wrong
        raise


@models_app.command("list")
def models_list(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Registered adapter versions with aliases and held-out scores, and the staged base models."""
    from ptwiki_llm.models.staging import stage_manifest
    from ptwiki_llm.registry import list_versions
    from ptwiki_llm.tracking import store_exists

    cfg = _load(config, set_)
    versions = _registry_call(list_versions, cfg) if store_exists(cfg) else []
    staged = {ref.name: stage_manifest(ref, cfg) for ref in (cfg.models.base,)}
    if as_json:
        console.print_json(json.dumps({"versions": versions, "staged": staged}, default=str))
        return
    table = Table(title=f"registered model {cfg.registry.model_name} ({cfg.mlflow_tracking_uri})")
    for column in ("version", "aliases", "created", "base", "held-out ppl base -> tuned", "bits/byte", "run"):
        table.add_column(column, overflow="fold")
    for v in versions:
        tags = v["tags"]
        table.add_row(v["version"], ", ".join(v["aliases"]), v["created"], tags.get("ptwiki.base.name", ""),
                      f"{tags.get('ptwiki.heldout.base.perplexity', '?')} -> "
                      f"{tags.get('ptwiki.heldout.tuned.perplexity', '?')}",
                      f"{tags.get('ptwiki.heldout.base.bits_per_byte', '?')} -> "
                      f"{tags.get('ptwiki.heldout.tuned.bits_per_byte', '?')}", v["run_id"] or "")
    console.print(table if versions else "no registered versions yet (run `ptwiki-llm run` to train one)")
    for name, manifest in staged.items():
        state = (f"staged ({manifest['source'].get('kind')}, sha256 {manifest['weights_sha256'][:16]}...)"
                 if manifest else "not staged (converted on first use if local, else `ptwiki-llm models stage`)")
        console.print(f"base model [cyan]{name}[/cyan]: {state}")


@models_app.command("show")
def models_show(
    which: Annotated[str, typer.Argument(help="champion, challenger or a version number")] = "champion",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """One registered version: aliases, source, lineage tags."""
    from ptwiki_llm.registry import show_version

    cfg = _load(config, set_)
    console.print_json(json.dumps(_registry_call(show_version, cfg, which), default=str))


@models_app.command("promote")
def models_promote(
    which: Annotated[str, typer.Argument(help="version number (or alias, e.g. challenger) to promote")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (recorded as a tag)")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Move alias 'champion' to a version and record why."""
    from ptwiki_llm.registry import promote

    cfg = _load(config, set_)
    with _workdir_session(cfg, "models promote"):
        record = _registry_call(promote, cfg, which, reason)
    was = f" (was v{record['previous']})" if record["previous"] else ""
    console.print(f"[green]champion[/green] -> v{record['version']}{was}: {record['reason']}")


# --- HPC: the ZenML stack that runs steps as SLURM jobs (ptwiki_llm/hpc) ---------------------------

stack_app = typer.Typer(no_args_is_help=True, help="Register the ZenML stack that runs each step as a SLURM job.")
app.add_typer(stack_app, name="stack")
PRESETS_DIR = SOURCE_ROOT / "configs"


@stack_app.command("up")
def stack_up_command(
    preset: Annotated[str | None, typer.Option(
        "--preset", help="local-slurm or atena (configs/<preset>.yaml in the repository)")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    activate: Annotated[bool, typer.Option("--activate/--no-activate", help="make it the active stack")] = True,
) -> None:
    """Register the SLURM orchestrator flavor, its orchestrator, a shared artifact store and the stack (idempotent)."""
    from ptwiki_llm.zenml_env import prepare_zenml

    if preset and config:
        raise typer.BadParameter("give --preset or --config, not both")
    path = PRESETS_DIR / f"{preset}.yaml" if preset else config
    cfg = _load(path, set_)  # also applies hpc.services (the ZenML server's URL)
    prepare_zenml(cfg)
    from zenml.client import Client

    from ptwiki_llm.hpc.stack import stack_up

    try:
        report = stack_up(cfg)
        if activate:
            Client().activate_stack(report.stack)
    except (RuntimeError, ValueError, KeyError) as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"ZenML stack {report.stack}" + (" (active)" if activate else ""))
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("orchestrator", f"{report.orchestrator} (flavor ptwiki_slurm: one sbatch job per step)")
    table.add_row("artifact store", f"{report.artifact_store}: {report.artifact_path}")
    table.add_row("job scripts and logs", report.jobs_dir)
    table.add_row("ZenML store", report.store_url)
    table.add_row("changes", "; ".join(report.actions) or "none (already up to date)")
    console.print(table)
    if cfg.hpc.orchestrator != "slurm":
        console.print(f"[yellow]note:[/yellow] {path or 'this config'} has hpc.orchestrator={cfg.hpc.orchestrator}; "
                      "runs with it use the local stack (set hpc.orchestrator: slurm)")


# --- the ZenML dashboard over the workdir's store (ptwiki_llm/dashboard.py) ----------------------


@app.command()
def dashboard(
    config: ConfigOption = None,
    set_: SetOption = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="port on 127.0.0.1 (default 8237, or a free one when that is taken)")] = None,
) -> None:
    """Serve the ZenML dashboard over this workdir's ZenML store on 127.0.0.1; print the last run's page."""
    from ptwiki_llm.zenml_env import prepare_zenml

    cfg = _load(config, set_)
    prepare_zenml(cfg)
    from ptwiki_llm.dashboard import DashboardError, run_url, start_dashboard

    try:
        served, run = start_dashboard(cfg, port)
    except DashboardError as exc:
        console.print(f"[red]dashboard failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"ZenML dashboard for {cfg.zenml_config_path}: {served.url}", markup=False, highlight=False)
    if run is None:
        console.print("no pipeline run yet: run `ptwiki-llm data` (or `run`) and reload the page")
    else:
        console.print(f"last run {run.name} ({run.status}): {run_url(served.url, run.project.name, str(run.id))}",
                      markup=False, highlight=False)
    if served.process is None:
        console.print("served by the ZenML server in hpc.services.zenml: nothing to stop here")
        return
    console.print(f"Press Ctrl-C to stop it (server log: {served.log})", markup=False, highlight=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the server too, as Ctrl-C does
    try:
        code = served.process.wait()
    except KeyboardInterrupt:
        served.stop()
        console.print("dashboard stopped")
        return
    console.print(f"[red]the dashboard server exited with code {code}[/red] (log: {served.log})")
    raise typer.Exit(1)


# --- evaluate and compare (ptwiki_llm/evaluation) -------------------------------------------------


def _print_evaluation(evaluation: EvaluationReport) -> None:
    """The comparison table (metric x arm, value [interval]) and the gate's decision."""
    from ptwiki_llm.evaluation.report import comparison_table

    header, rows = comparison_table(evaluation.model_dump(include={"arms", "metrics"}))
    table = Table(title="Evaluation: mean [95% bootstrap interval]")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    gate = evaluation.gate
    moved = " (champion alias moved)" if gate.applied else ""
    console.print(f"[bold]promotion gate[/bold]: {gate.outcome}{moved}; challenger "
                  f"{'v' + gate.challenger if gate.challenger else 'none'} vs {gate.baseline}")
    for reason in gate.reasons:
        console.print(f"  - {reason}", markup=False, highlight=False)
    console.print(f"report: {evaluation.report} (HTML {evaluation.report_html}, examples {evaluation.examples})")


@app.command()
def evaluate(
    config: ConfigOption = None,
    set_: SetOption = None,
    no_cache: NoCacheOption = False,
    here: HereOption = False,
) -> None:
    """Compare base, base+rag, ft, ft+rag (and champion) with intervals; promote the challenger when it wins.

    A pipeline through hpc.orchestrator (the data steps first, cached; on a SLURM preset evaluate is a GPU
    job); needs a registered challenger (`ptwiki-llm run`) and, for the RAG arms, an index (`ptwiki-llm index`).
    """
    cfg = _in_process(_load(config, set_, no_cache), here)
    console.print(f"[bold]ptwiki-llm[/bold] evaluate, preset [cyan]{cfg.preset}[/cyan], arms "
                  f"{', '.join(cfg.evaluation.arms)}, orchestrator {cfg.hpc.orchestrator}, workdir {cfg.workdir}")
    with _workdir_session(cfg, "evaluate", "evaluate"):
        from ptwiki_llm.runner import run_pipeline  # after the pre-flight checks: it imports pyarrow, numpy

        result = run_pipeline(cfg, "evaluate").outputs["evaluation"]
    _print_evaluation(result)


@app.command(epilog='Example: ptwiki-llm compare "Onde nasceu Walter D\'Ávila?"')
def compare(
    question: Annotated[str, typer.Argument(help="a question in Portuguese")],
    k: Annotated[int | None, typer.Option("--k", min=1, help="passages to retrieve (default rag.retrieval.k)")] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="hybrid (BM25 + vector) retrieval")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """One question, every arm (evaluation.arms) side by side; RAG arms show their evidence and sources."""
    from ptwiki_llm.rag.answering import Answerer

    cfg = _load(config, set_)
    answerer = Answerer(cfg)
    arms, notes = answerer.compare_arms()
    comparison = answerer.answer(question, arms, k=k, hybrid=hybrid, notes=notes)
    table = Table(title=question, show_lines=True)
    table.add_column("arm")
    table.add_column("answer", overflow="fold")
    table.add_column("evidence (source sentences)", overflow="fold")
    for answer in comparison.answers:
        # Text: answers and sources are shown as written, never read as rich markup
        table.add_row(answer.model + ("+rag" if answer.rag else ""), Text(answer.text), Text(_evidence_lines(answer)))
    console.print(table)
    _print_sources(comparison)
    console.print(f"[dim]{comparison.seconds:.1f} s[/dim]")
    for note in comparison.notes:
        console.print(f"[dim]{note}[/dim]")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="address to bind (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on")] = 8000,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """The arena page: one question, every arm's answer side by side with evidence and sources."""
    from ptwiki_llm.arena import serve as serve_arena

    cfg = _load(config, set_)
    serve_arena(cfg, host, port, log=console.print)  # a missing challenger/index/model is a one-line UserError


if __name__ == "__main__":
    app()
