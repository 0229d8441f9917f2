"""``ptwiki-llm``: run the pipeline, or parts of it, and say where everything is."""

from __future__ import annotations

import json
import os
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
    try:
        return load_config(config_path, overrides)
    except (FileNotFoundError, ValueError) as exc:
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
    table.add_row("MLflow", f"{config.mlflow_tracking_uri}" + (f" (parent run {mlflow_run})" if mlflow_run else ""))
    table.add_row("ZenML store", str(config.zenml_config_path))
    console.print(table)
    if config.mlflow_tracking_uri.startswith("sqlite:"):
        console.print(f"Open the MLflow UI: [bold]mlflow ui --backend-store-uri {config.mlflow_tracking_uri}[/bold]")


@app.command()
def run(config: ConfigOption = None, set_: SetOption = None, no_cache: NoCacheOption = False) -> None:
    """Run the whole pipeline (currently ingest -> validate -> format)."""
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


def _can_resolve_offline(cfg: Config) -> bool:
    """True unless resolving would start a Hub download (info must stay read-only)."""
    from ptwiki_llm.assets import find_staged

    return find_staged(cfg.data.source, cfg) is not None or cfg.data.hub_fallback is None


if __name__ == "__main__":
    app()
