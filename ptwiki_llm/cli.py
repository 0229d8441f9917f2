"""``ptwiki-llm``: run the pipeline, or parts of it, and say where everything is."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ptwiki_llm.config import Config, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
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


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return tree


def _load(config_path: Path | None, sets: list[str] | None, no_cache: bool = False) -> Config:
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    overrides = parse_overrides(sets)
    if no_cache:
        overrides.setdefault("zenml", {})["enable_cache"] = False
    from ptwiki_llm.hpc.services import ServiceNotRunning, apply_services

    try:
        # hpc.services: the servers' URLs from infra/ (before zenml is imported), for every command
        return apply_services(load_config(config_path, overrides))
    except (FileNotFoundError, ValueError, ServiceNotRunning) as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _run(which: str, config: Config) -> None:
    from ptwiki_llm.runner import run_pipeline

    console.print(f"[bold]ptwiki-llm[/bold] {which} pipeline, preset [cyan]{config.preset}[/cyan], "
                  f"workdir {config.workdir}")
    try:
        summary = run_pipeline(config, which)
    except Exception as exc:
        console.print(f"[red]pipeline failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"ZenML run [cyan]{summary.run_name}[/cyan]: {summary.status}"
                  + (f" (served from cache: {', '.join(summary.cached_steps)})" if summary.cached_steps else ""))
    _print_outputs(summary.outputs, config, summary.mlflow_parent_run_id)


def _print_outputs(outputs: dict[str, Any], config: Config, mlflow_run: str | None) -> None:
    table = Table(title="Where everything went", show_lines=False)
    table.add_column("what")
    table.add_column("where / value", overflow="fold")
    if "articles" in outputs:
        articles = outputs["articles"]
        counts = articles["counts"]
        table.add_row("articles (parquet shards)", articles["dir"])
        table.add_row("ingest manifest", str(Path(articles["dir"]) / "manifest.json"))
        table.add_row("ingest counts", f"read {counts['read']}, kept {counts['kept']}, skipped {counts['skipped']}")
    if "validated" in outputs:
        validated = outputs["validated"]
        table.add_row("quarantine", validated["quarantine"])
        table.add_row("Data Docs", str(Path(validated["dir"]) / "data_docs" / "index.html"))
        counts = validated["counts"]
        table.add_row("validation", f"quarantined {counts['quarantined']}, accepted {counts['accepted']}")
    if "formatted" in outputs:
        formatted = outputs["formatted"]
        summary = formatted["summary"]
        table.add_row("train JSONL", formatted["train"])
        table.add_row("eval JSONL", formatted["eval"])
        tokens = summary.get("tokens", {})
        table.add_row("examples", f"train {summary['example_count']['train']}, eval {summary['example_count']['eval']}"
                      + (f"; ~{tokens.get('estimated_total_tokens', 0):,} tokens" if tokens else ""))
    if "trained" in outputs:  # train -> register
        trained = outputs["trained"]
        table.add_row("adapter (run folder)", trained["adapter_dir"])
        heldout = trained.get("heldout") or {}
        if heldout.get("base") and heldout.get("tuned"):
            base, tuned = heldout["base"], heldout["tuned"]
            table.add_row("held-out perplexity", f"{base['perplexity']:.2f} -> {tuned['perplexity']:.2f} "
                          f"(bits/byte {base['bits_per_byte']:.3f} -> {tuned['bits_per_byte']:.3f})")
    if "registered" in outputs:
        registered = outputs["registered"]
        table.add_row("registered adapter", f"{registered['alias_uri']} (version {registered['version']})")
    if "rag_index" in outputs:
        index = outputs["rag_index"]
        table.add_row("RAG index", f"{index['backend']} {index['location']}, collection {index['collection']}, "
                      f"{index['counts']['store_count']} passages")
    if "evaluation" in outputs:
        evaluation = outputs["evaluation"]
        table.add_row("evaluation report", f"{evaluation['report']} (HTML: {evaluation['report_html']})")
        gate = evaluation["gate"]
        table.add_row("promotion gate", f"{gate['outcome']}" + (" (champion moved)" if gate.get("applied") else ""))
    table.add_row("MLflow", f"{config.mlflow_tracking_uri}" + (f" (parent run {mlflow_run})" if mlflow_run else ""))
    table.add_row("ZenML store", str(config.zenml_config_path))
    console.print(table)
    if "evaluation" in outputs:
        _print_evaluation(outputs["evaluation"])
    if config.mlflow_tracking_uri.startswith("sqlite:"):
        console.print(f"Open the MLflow UI: [bold]mlflow ui --backend-store-uri {config.mlflow_tracking_uri}[/bold]")


@app.command()
def run(config: ConfigOption = None, set_: SetOption = None, no_cache: NoCacheOption = False) -> None:
    """Run the whole pipeline: ingest -> validate -> format -> train -> register, index, evaluate."""
    _run("full", _load(config, set_, no_cache))


@app.command()
def data(config: ConfigOption = None, set_: SetOption = None, no_cache: NoCacheOption = False) -> None:
    """Run the data steps: ingest -> validate -> format."""
    _run("data", _load(config, set_, no_cache))


@app.command()
def info(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show the resolved config and where every input and artifact is."""
    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.models import local_model_dir
    from ptwiki_llm.rag.pointer import pointer_path

    cfg = _load(config, set_)
    try:
        source: str = str(resolve_data_source(cfg)) if _can_resolve_offline(cfg) else "(download on first run)"
    except FileNotFoundError as exc:
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


def _can_resolve_offline(cfg: Config) -> bool:
    """True unless resolving would start a Hub download (info must stay read-only)."""
    from ptwiki_llm.assets import find_staged

    return find_staged(cfg.data.source, cfg) is not None or cfg.data.hub_fallback is None


# --- RAG: index and ask (ptwiki_llm/rag) ---------------------------------------------------------


@app.command()
def index(
    config: ConfigOption = None,
    set_: SetOption = None,
    no_cache: NoCacheOption = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="index only the first N accepted articles")] = None,
) -> None:
    """Index the validated articles into the vector store (runs the data steps first, cached)."""
    from ptwiki_llm.runner import run_pipeline
    from ptwiki_llm.stages import index_stage

    cfg = _load(config, set_, no_cache)
    console.print(f"[bold]ptwiki-llm[/bold] index, preset [cyan]{cfg.preset}[/cyan], backend "
                  f"[cyan]{cfg.rag.store.backend}[/cyan], workdir {cfg.workdir}")
    try:
        summary = run_pipeline(cfg, "data")
        result = index_stage(cfg, summary.outputs["validated"], summary.run_id, max_articles=limit)
    except Exception as exc:
        console.print(f"[red]index failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    counts = result["counts"]
    table = Table(title="Vector index")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("backend / location", f"{result['backend']} {result['location']}")
    table.add_row("collection", result["collection"])
    table.add_row("embedder", f"{result['embedder']} ({result['dimension']} dims)")
    table.add_row("articles", f"{counts['articles']} ({counts['quarantined_excluded']} quarantined left out)")
    table.add_row("chunks", f"{counts['chunks']} (dropped: {counts['short_dropped']} too short, "
                  f"{counts['duplicates_dropped']} duplicates)")
    table.add_row("this run", f"embedded {counts['embedded']}, already indexed {counts['already_indexed']}")
    table.add_row("objects in the collection", str(counts["store_count"]))
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="a question in Portuguese")],
    rag: Annotated[bool, typer.Option("--rag", help="answer from retrieved Wikipedia passages")] = False,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", help="use the registered adapter with this alias: champion or challenger")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="passages to retrieve (default rag.retrieval.k)")] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="hybrid (BM25 + vector) retrieval")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Answer a question with the base model (or an adapter), optionally grounded in retrieved sources."""
    from ptwiki_llm.rag.answer import answer_question

    cfg = _load(config, set_)
    if adapter is not None and adapter not in ("champion", "challenger"):
        raise typer.BadParameter("--adapter must be 'champion' or 'challenger'")
    if hybrid and not rag:
        raise typer.BadParameter("--hybrid needs --rag")
    hits = None
    try:
        if rag:
            from ptwiki_llm.rag.pointer import current_collection
            from ptwiki_llm.rag.retrieval import open_retriever

            retriever = open_retriever(cfg, current_collection(cfg))
            try:
                hits = retriever.retrieve(question, k=k, mode="hybrid" if hybrid else None)
            finally:
                retriever.close()
            if not hits:
                console.print("[yellow]no passages retrieved; answering without sources[/yellow]")
        if adapter:
            from ptwiki_llm.registry import load_for_inference

            model, tokenizer = load_for_inference(cfg, adapter)
        else:
            from ptwiki_llm.models import load_causal_lm

            model, tokenizer = load_causal_lm(cfg)
        answer = answer_question(question, model, tokenizer, cfg.rag.answer, hits)
    except Exception as exc:  # missing index/model/registry entry: say which, no traceback
        console.print(f"[red]ask failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    console.print(answer.text)
    if rag and answer.sources:
        console.print("\n[bold]Fontes[/bold]")
        for number, hit in enumerate(answer.sources, 1):
            section = f" — {hit.chunk.section}" if hit.chunk.section else ""
            console.print(f"[{number}] {hit.chunk.title}{section}  {hit.chunk.url}", markup=False, highlight=False)
        if answer.sources_left_out or answer.sources_truncated:
            console.print(f"({answer.sources_truncated} source(s) cut and {answer.sources_left_out} left out to fit "
                          f"the context budget)")


# --- models: staging and the adapter registry (ptwiki_llm/models.py, ptwiki_llm/registry.py) ------

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
    from ptwiki_llm.models import ModelNotStagedError, model_ref, stage_manifest, stage_model

    cfg = _load(config, set_)
    try:
        ref = model_ref(cfg, name)
        folder = stage_model(cfg, ref, force=force)
    except (KeyError, ModelNotStagedError) as exc:
        console.print(f"[red]stage failed:[/red] {exc}")
        raise typer.Exit(2) from exc
    manifest = stage_manifest(ref, cfg) or {}
    console.print(f"staged [cyan]{ref.name}[/cyan] in {folder} (from {manifest.get('source', {}).get('kind')}, "
                  f"weights sha256 {manifest.get('weights_sha256', '?')[:16]}...)")


def _registry_call(function: Any, *args: Any) -> Any:
    from ptwiki_llm.models import ModelNotStagedError
    from ptwiki_llm.registry import RegistryError

    try:
        return function(*args)
    except (RegistryError, ModelNotStagedError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@models_app.command("list")
def models_list(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Registered adapter versions with aliases and held-out scores, and the staged base models."""
    from ptwiki_llm.models import stage_manifest
    from ptwiki_llm.registry import list_versions

    cfg = _load(config, set_)
    versions = _registry_call(list_versions, cfg)
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
    record = _registry_call(promote, cfg, which, reason)
    was = f" (was v{record['previous']})" if record["previous"] else ""
    console.print(f"[green]champion[/green] -> v{record['version']}{was}: {record['reason']}")


# --- HPC: the ZenML stack that runs steps as SLURM jobs (ptwiki_llm/hpc) ---------------------------

stack_app = typer.Typer(no_args_is_help=True, help="Register the ZenML stack that runs each step as a SLURM job.")
app.add_typer(stack_app, name="stack")
PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


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


def _print_evaluation(evaluation: dict[str, Any]) -> None:
    """The comparison table (metric x arm, value [interval]) and the gate's decision."""
    from ptwiki_llm.evaluation.report import comparison_table

    header, rows = comparison_table({"arms": evaluation["arms"], "metrics": evaluation["metrics"]})
    table = Table(title="Evaluation: mean [95% bootstrap interval]")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    gate = evaluation["gate"]
    moved = " (champion alias moved)" if gate.get("applied") else ""
    console.print(f"[bold]promotion gate[/bold]: {gate['outcome']}{moved}; challenger "
                  f"{'v' + gate['challenger'] if gate.get('challenger') else 'none'} vs {gate['baseline']}")
    for reason in gate["reasons"]:
        console.print(f"  - {reason}", markup=False, highlight=False)
    console.print(f"report: {evaluation['report']} (HTML {evaluation['report_html']}, "
                  f"examples {evaluation['examples']})")


@app.command()
def evaluate(
    config: ConfigOption = None,
    set_: SetOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Compare base, base+rag, ft, ft+rag (and champion) with intervals; promote the challenger when it wins.

    Runs the data steps first (cached); needs a registered challenger (`ptwiki-llm run`) and, for the
    RAG arms, an index (`ptwiki-llm index`).
    """
    from ptwiki_llm.runner import run_pipeline
    from ptwiki_llm.stages import evaluate_stage

    cfg = _load(config, set_, no_cache)
    console.print(f"[bold]ptwiki-llm[/bold] evaluate, preset [cyan]{cfg.preset}[/cyan], arms "
                  f"{', '.join(cfg.evaluation.arms)}, workdir {cfg.workdir}")
    try:
        summary = run_pipeline(cfg, "data")
        result = evaluate_stage(cfg, summary.outputs["validated"], summary.outputs["formatted"], None, None,
                                summary.run_id)
    except Exception as exc:  # missing challenger/index/asset: the message says what to run
        console.print(f"[red]evaluate failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    _print_evaluation(result)


@app.command()
def compare(
    question: Annotated[str, typer.Argument(help="a question in Portuguese")],
    k: Annotated[int | None, typer.Option("--k", min=1, help="passages to retrieve (default rag.retrieval.k)")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """One question, every arm (evaluation.arms) side by side; RAG arms show their sources."""
    from ptwiki_llm.evaluation.arms import load_arm_model, plan_arms, registry_versions, release_memory
    from ptwiki_llm.rag.answer import answer_question

    cfg = _load(config, set_)
    try:
        versions = registry_versions(cfg, None)
        arms, notes = plan_arms(cfg, versions)
        hits = None
        if any(arm.rag for arm in arms):
            from ptwiki_llm.rag.pointer import current_collection
            from ptwiki_llm.rag.retrieval import open_retriever

            retriever = open_retriever(cfg, current_collection(cfg))
            try:
                hits = retriever.retrieve(question, k=k)
            finally:
                retriever.close()
        answers = {}
        for model_name in dict.fromkeys(arm.model for arm in arms):
            model, tokenizer = load_arm_model(cfg, model_name, versions)
            for arm in (a for a in arms if a.model == model_name):
                answers[arm.name] = answer_question(question, model, tokenizer, cfg.rag.answer,
                                                    hits if arm.rag else None)
            del model, tokenizer
            release_memory()
    except Exception as exc:  # no challenger/index/model: the message says which and what to run
        console.print(f"[red]compare failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=question, show_lines=True)
    table.add_column("arm")
    table.add_column("answer", overflow="fold")
    table.add_column("sources", overflow="fold")
    for arm in arms:
        answer = answers[arm.name]
        model = {"ft": f"v{versions.challenger}", "champion": f"v{versions.champion}"}.get(arm.model, "")
        sources = "\n".join(f"[{n}] {h.chunk.title}{' — ' + h.chunk.section if h.chunk.section else ''} {h.chunk.url}"
                             for n, h in enumerate(answer.sources, 1))
        table.add_row(f"{arm.name} {model}".strip(), answer.text, sources or ("(no sources)" if arm.rag else ""))
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")


if __name__ == "__main__":
    app()
