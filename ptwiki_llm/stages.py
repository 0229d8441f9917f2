"""The pipeline's stages as plain functions of a Config: what each ZenML step calls.

Each stage writes under a folder named by the content it depends on (input hash + its own config),
so re-runs never overwrite what an earlier cached run still points to, and logs to MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptwiki_llm import tracking
from ptwiki_llm.config import Config
from ptwiki_llm.data.sources.base import ConvertOptions
from ptwiki_llm.provenance import file_fingerprint, sha256_json

# Which config sections each stage depends on; the steps receive only these, so changing the
# format settings re-runs format but leaves ingest and validate served from ZenML's cache.
_COMMON = ("preset", "workdir", "asset_path", "allow_hub_download", "seed", "mlflow", "zenml")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("data.source", "data.hub_fallback", "data.max_articles", "data.wiki_base_url", "data.ingest"),
    "validate": ("data.validate",),
    "format": ("data.format", "models"),
}


def config_for_stage(config: Config, stage: str) -> dict[str, Any]:
    full = config.to_dict()
    part: dict[str, Any] = {key: full[key] for key in _COMMON}
    for dotted in STAGE_SECTIONS[stage]:
        section, _, key = dotted.partition(".")
        if key:
            part.setdefault(section, {})[key] = full[section][key]
        else:
            part[section] = full[section]
    return part


def config_from_stage(part: dict[str, Any]) -> Config:
    return Config.model_validate(part)


def input_fingerprint(config: Config) -> dict[str, Any]:
    """Identity of the corpus input, for cache keys (resolves, and if needed downloads, the input)."""
    from ptwiki_llm.assets import resolve_data_source

    return file_fingerprint(resolve_data_source(config))


def _log_counts(prefix: str, counts: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_metrics({f"{prefix}.{k}": float(v) for k, v in tracking.flatten(counts).items()
                        if isinstance(v, int | float)})


def ingest_stage(config: Config, pipeline_run_id: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    import mlflow

    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.data.ingest import ingest

    source = resolve_data_source(config)
    options = ConvertOptions(
        wiki_base_url=config.data.wiki_base_url,
        max_article_bytes=config.data.ingest.max_article_bytes,
        min_text_chars=config.data.ingest.min_text_chars,
    )
    key = sha256_json(
        {
            "input": file_fingerprint(source),
            "options": [options.wiki_base_url, options.max_article_bytes, options.min_text_chars],
            "shard_size": config.data.ingest.shard_size,
            "max_articles": config.data.max_articles,
        }
    )[:16]
    out_dir = config.data_dir / "articles" / key
    with tracking.step_run(config, "ingest", pipeline_run_id):
        result = ingest(source, out_dir, options, config.data.ingest, config.data.max_articles, show_progress)
        manifest = result.manifest
        mlflow.log_params({"source": str(source), "source_kind": manifest["source_kind"],
                           "workers": manifest["workers"], "max_articles": config.data.max_articles})
        _log_counts("ingest", manifest["counts"])
        mlflow.log_metrics({"ingest.elapsed_s": manifest["elapsed_s"],
                            "ingest.articles_per_s": manifest["articles_per_s"] or 0.0,
                            "ingest.input_mb_per_s": manifest["input_mb_per_s"] or 0.0})
        mlflow.log_artifact(str(result.manifest_path))
        mlflow.log_artifact(str(out_dir / "skipped.parquet"))
        tracking.log_dataset_manifest(manifest, result.manifest_path, name="ptwiki-articles", context="ingest")
    return {
        "dir": str(out_dir),
        "dataset_sha256": manifest["dataset_sha256"],
        "counts": manifest["counts"],
        "manifest_sha256": sha256_json(manifest),
    }


def validate_stage(config: Config, articles: dict[str, Any], pipeline_run_id: str | None = None) -> dict[str, Any]:
    import mlflow

    from ptwiki_llm.data.ingest import shard_paths
    from ptwiki_llm.data.validate import raise_if_failed, validate_articles

    key = f"{articles['dataset_sha256'][:16]}-{sha256_json(config.data.validate_.model_dump())[:8]}"
    out_dir = config.data_dir / "validated" / key
    with tracking.step_run(config, "validate", pipeline_run_id):
        report = validate_articles(shard_paths(Path(articles["dir"])), out_dir, config.data.validate_)
        mlflow.log_params({f"validate.{k}": v for k, v in config.data.validate_.model_dump().items()})
        mlflow.log_metrics({
            "validate.total": report.total,
            "validate.quarantined": report.quarantined,
            "validate.quarantined_share": report.quarantined_share,
            **{tracking.metric_name(f"validate.failures.{name}"): count
               for name, count in report.failures_by_expectation.items()},
        })
        mlflow.log_artifact(str(report.report_path))
        mlflow.log_artifact(str(report.quarantine_path))
        mlflow.log_artifacts(str(report.data_docs_dir), artifact_path="data_docs")
        raise_if_failed(report)
    counts = dict(articles["counts"])
    counts["quarantined"] = report.quarantined
    counts["accepted"] = counts["kept"] - report.quarantined
    return {
        "articles_dir": articles["dir"],
        "dataset_sha256": articles["dataset_sha256"],
        "dir": str(out_dir),
        "quarantine": str(report.quarantine_path),
        "counts": counts,
    }


def format_stage(config: Config, validated: dict[str, Any], pipeline_run_id: str | None = None,
                 show_progress: bool = True) -> dict[str, Any]:
    import mlflow

    from ptwiki_llm.data.format import format_articles
    from ptwiki_llm.data.ingest import shard_paths
    from ptwiki_llm.data.validate import quarantined_ids
    from ptwiki_llm.models import model_ref, token_counter

    fmt = config.data.format
    tokenizer_ref = model_ref(config, fmt.tokenizer)
    key = f"{validated['dataset_sha256'][:16]}-{sha256_json([fmt.model_dump(), tokenizer_ref.model_dump()])[:8]}"
    out_dir = config.data_dir / "formatted" / key
    excluded = quarantined_ids(Path(validated["dir"]))
    with tracking.step_run(config, "format", pipeline_run_id):
        result = format_articles(
            shard_paths(Path(validated["articles_dir"])),
            out_dir,
            fmt,
            exclude_ids=excluded,
            tokenize=token_counter(tokenizer_ref, config),
            total_articles=validated["counts"]["accepted"],
            show_progress=show_progress,
        )
        summary = result.summary
        mlflow.log_params({f"format.{k}": v for k, v in fmt.model_dump().items()})
        mlflow.log_param("format.tokenizer_model", tokenizer_ref.name)
        _log_counts("format", {"articles": summary["articles"], "examples": summary["example_count"],
                               "tokens": summary.get("tokens", {}), "chars": summary["chars"]})
        mlflow.log_artifact(str(out_dir / "summary.json"))
        for split in ("train", "eval"):
            manifest = {"inputs": [{"path": str(out_dir / f"{split}.jsonl")}],
                        "dataset_sha256": summary["files"][split]["sha256"]}
            tracking.log_dataset_manifest(manifest, out_dir / "summary.json", name=f"ptwiki-{split}",
                                          context="training" if split == "train" else "evaluation")
    return {
        "dir": str(out_dir),
        "train": str(result.train_path),
        "eval": str(result.eval_path),
        "summary": json.loads(json.dumps(summary)),
        "dataset_sha256": validated["dataset_sha256"],
    }
