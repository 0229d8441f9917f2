"""The pipeline's stages as plain functions of a Config: what each ZenML step calls.

Each stage writes under a folder named by the content it depends on (input hash + its own config),
so re-runs never overwrite what an earlier cached run still points to, and logs to MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm import tracking
from ptwiki_llm.config import Config
from ptwiki_llm.config_slice import config_for_stage
from ptwiki_llm.data.sources.base import ConvertOptions
from ptwiki_llm.provenance import file_fingerprint, sha256_file, sha256_json

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData
    from ptwiki_llm.data.ingest import IngestResult
    from ptwiki_llm.data.validate import ValidationResult
    from ptwiki_llm.evaluation.run import EvaluationReport
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.embeddings import Embedder
    from ptwiki_llm.rag.identity import IndexIdentity
    from ptwiki_llm.rag.index import RagIndex
    from ptwiki_llm.registry import RegisteredAdapter
    from ptwiki_llm.training.result import TrainResult


def input_fingerprint(config: Config) -> dict[str, Any]:
    """Identity of the corpus input, for cache keys (resolves, and if needed downloads, the input)."""
    from ptwiki_llm.assets import resolve_data_source

    return file_fingerprint(resolve_data_source(config))


def _log_counts(prefix: str, counts: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_metrics({f"{prefix}.{k}": float(v) for k, v in tracking.flatten(counts).items()
                        if isinstance(v, int | float)})


def ingest_options(config: Config) -> ConvertOptions:
    ingest = config.data.ingest
    return ConvertOptions(wiki_base_url=config.data.wiki_base_url, max_article_bytes=ingest.max_article_bytes,
                          min_text_chars=ingest.min_text_chars)


def ingest_dir(config: Config, source: Path, options: ConvertOptions) -> Path:
    """Where ingest writes the corpus of this input and these settings."""
    key = sha256_json(
        {
            "input": file_fingerprint(source),
            "options": [options.wiki_base_url, options.max_article_bytes, options.min_text_chars],
            "shard_size": config.data.ingest.shard_size,
            "shard_max_chars": config.data.ingest.shard_max_chars,
            "max_articles": config.data.max_articles,
        }
    )[:16]
    return config.data_dir / "articles" / key


def validate_dir(config: Config, dataset_sha256: str) -> Path:
    """Where validate writes its report and quarantine for this corpus and these settings."""
    settings = sha256_json(config.data.validate_.model_dump())[:8]
    return config.data_dir / "validated" / f"{dataset_sha256[:16]}-{settings}"


def ingest_stage(config: Config, pipeline_run_id: str | None = None, show_progress: bool = True) -> IngestResult:
    import mlflow

    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.data.ingest import IngestCounts, IngestResult, ingest

    source = resolve_data_source(config)
    options = ingest_options(config)
    out_dir = ingest_dir(config, source, options)
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
    return IngestResult(dir=str(out_dir), dataset_sha256=manifest["dataset_sha256"],
                        counts=IngestCounts.model_validate(manifest["counts"]), manifest_sha256=sha256_json(manifest))


def validate_stage(config: Config, articles: IngestResult, pipeline_run_id: str | None = None) -> ValidationResult:
    import mlflow

    from ptwiki_llm.data.ingest import shard_paths
    from ptwiki_llm.data.validate import ValidationCounts, ValidationResult, raise_if_failed, validate_articles

    out_dir = validate_dir(config, articles.dataset_sha256)
    with tracking.step_run(config, "validate", pipeline_run_id):
        report = validate_articles(shard_paths(Path(articles.dir)), out_dir, config.data.validate_)
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
    counts = ValidationCounts(**articles.counts.model_dump(), quarantined=report.quarantined,
                              accepted=articles.counts.kept - report.quarantined)
    return ValidationResult(articles_dir=articles.dir, dataset_sha256=articles.dataset_sha256, dir=str(out_dir),
                            quarantine=str(report.quarantine_path), counts=counts)


def format_stage(config: Config, validated: ValidationResult, pipeline_run_id: str | None = None,
                 show_progress: bool = True) -> FormattedData:
    import mlflow

    from ptwiki_llm.data.format import FormattedData, format_articles
    from ptwiki_llm.data.ingest import shard_paths
    from ptwiki_llm.models.refs import model_ref, token_counter

    fmt = config.data.format
    tokenizer_ref = model_ref(config, fmt.tokenizer)
    knowledge_file = resolve_knowledge_file(config)
    knowledge_key = [config.data.knowledge.model_dump(), sha256_file(knowledge_file)] if knowledge_file else None
    key = f"{validated.dataset_sha256[:16]}-" + sha256_json(
        [fmt.model_dump(), tokenizer_ref.model_dump(), *([knowledge_key] if knowledge_key else [])])[:8]
    out_dir = config.data_dir / "formatted" / key
    excluded = validated.quarantined_ids()
    with tracking.step_run(config, "format", pipeline_run_id):
        result = format_articles(
            shard_paths(Path(validated.articles_dir)),
            out_dir,
            fmt,
            exclude_ids=excluded,
            tokenize=token_counter(tokenizer_ref, config),
            total_articles=validated.counts.accepted,
            show_progress=show_progress,
        )
        summary = result.summary
        knowledge = None
        if knowledge_file is not None:
            knowledge = write_knowledge_corpus(config, knowledge_file, out_dir)
            summary["files"]["knowledge_train"] = {"path": "knowledge_train.jsonl",
                                                   "sha256": sha256_file(out_dir / "knowledge_train.jsonl")}
            summary["knowledge"] = {k: knowledge[k] for k in ("file", "counts", "training_texts",
                                                             "training_paraphrases", "training_chars")}
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
            _log_counts("format.knowledge", {"counts": knowledge["counts"],
                                             "training_texts": knowledge["training_texts"]})
        formatted = FormattedData.from_summary(
            out_dir, summary, eval_raw=str(result.eval_raw_path),
            knowledge=str(out_dir / "knowledge.json") if knowledge else None,
            knowledge_train=str(out_dir / "knowledge_train.jsonl") if knowledge else None,
            dataset_sha256=validated.dataset_sha256)
        mlflow.log_params({f"format.{k}": v for k, v in fmt.model_dump().items()})
        mlflow.log_param("format.tokenizer_model", tokenizer_ref.name)
        _log_counts("format", {"articles": summary["articles"], "examples": summary["example_count"],
                               "tokens": summary.get("tokens", {}), "chars": summary["chars"]})
        mlflow.log_artifact(str(out_dir / "summary.json"))
        for split in ("train", "eval"):
            manifest = {"inputs": [{"path": str(out_dir / f"{split}.jsonl")}],
                        "dataset_sha256": formatted.sha256(split)}
            tracking.log_dataset_manifest(manifest, out_dir / "summary.json", name=f"ptwiki-{split}",
                                          context="training" if split == "train" else "evaluation")
        _require_train_examples(summary, fmt.mode)
    return formatted


def _require_train_examples(summary: dict[str, Any], mode: str) -> None:
    """An empty train split is never what was asked for: say so instead of writing an empty train.jsonl."""
    from ptwiki_llm.errors import InputError

    if summary["example_count"]["train"] > 0:
        return
    articles = summary["articles"]
    raise InputError(
        f"format ({mode}) made no training examples: {articles['train']} article(s) in the train split, "
        f"{articles['eval']} in eval, {articles['without_examples']} too short to yield one",
        "Use a larger input (data.source) or lower data.format.min_section_chars",
    )


def resolve_knowledge_file(config: Config) -> Path | None:
    """The knowledge-injection QA file (data.knowledge.file), or None when it is off."""
    from ptwiki_llm.assets import AssetNotFoundError, find_staged

    name = config.data.knowledge.file
    if not name:
        return None
    path = find_staged(name, config)
    if path is None or not path.is_file():
        raise AssetNotFoundError(
            f"knowledge-injection QA file {name!r} not found (asset path: {config.asset_path or 'unset'}); set "
            "PTWIKI_ASSET_PATH to the folder holding staged data, or change data.knowledge.file (null = off)")
    return path


def write_knowledge_corpus(config: Config, path: Path, out_dir: Path) -> dict[str, Any]:
    """The knowledge documents' halves and fine-tuning texts (paraphrased by the base model when asked)."""
    from ptwiki_llm.data.knowledge import write_knowledge

    cfg = config.data.knowledge
    seed = config.seed if cfg.seed is None else cfg.seed
    paraphrase = None
    if cfg.paraphrases:
        from ptwiki_llm.data.paraphrase import base_model_paraphraser

        paraphrase = base_model_paraphraser(config, cfg.paraphrases)
    return write_knowledge(path, cfg, seed, out_dir, paraphrase)


# --- index (RAG) -------------------------------------------------------------------------------


INDEX_TASKS_ENV = "PTWIKI_INDEX_TASKS"  # the index job array's spec (hpc.job_array): merge its parts


def _index_setup(config: Config, dataset_sha256: str, excluded: set[int]) -> tuple[Embedder, IndexIdentity, Chunker]:
    """(embedder, identity, chunker) of an index of this corpus: the same for the step and its array tasks."""
    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.identity import index_identity

    rag = config.rag
    embedder = load_embedder(config)
    identity = index_identity(dataset_sha256, excluded, embedder.name, embedder.model_dir,
                              embedder.model.prompts, rag.embedding, rag.chunking, embedder.fingerprint)
    chunker = Chunker(load_tokenizer(model_ref(config, rag.embedding.model), config), rag.chunking)
    return embedder, identity, chunker


def index_part_keys(identity: dict[str, Any], precision: str, max_articles: int | None, tasks: int) -> list[str]:
    from ptwiki_llm.rag.index_parts import part_key

    return [part_key(identity, precision, max_articles, task, tasks) for task in range(tasks)]


def index_task(config: Config, task: int, tasks: int, max_articles: int | None) -> dict[str, Any]:
    """One task of the index job array: embed its shard of the validated corpus into its part (or find it done).

    The task runs before the index step, so it finds the corpus where ingest and validate put it for this
    config; the merge checks that it indexed what the step would (the part's key holds the index identity)."""
    from ptwiki_llm.assets import resolve_data_source
    from ptwiki_llm.data.ingest import iter_articles, load_manifest, shard_paths
    from ptwiki_llm.data.validate import quarantined_ids
    from ptwiki_llm.rag.index_parts import build_part

    articles_dir = ingest_dir(config, resolve_data_source(config), ingest_options(config))
    if not (articles_dir / "manifest.json").is_file():
        raise FileNotFoundError(f"index task {task}: no ingested corpus at {articles_dir}: the ingest step of this "
                                "run must have succeeded before the index array starts")
    dataset_sha256 = load_manifest(articles_dir)["dataset_sha256"]
    validated_dir = validate_dir(config, dataset_sha256)
    excluded = quarantined_ids(validated_dir)
    embedder, identity, chunker = _index_setup(config, dataset_sha256, excluded)
    key = index_part_keys(identity.to_dict(), embedder.precision, max_articles, tasks)[task]
    rows = iter_articles(shard_paths(articles_dir), excluded, max_articles)
    return build_part(rows, chunker, embedder, config.rag, config.expand(config.rag.store.parts_dir), task, tasks,
                      key)


def index_stage(config: Config, validated: ValidationResult, pipeline_run_id: str | None = None,
                show_progress: bool = True, max_articles: int | None = None) -> RagIndex:
    """Validated articles -> chunks -> embeddings -> vector store (resumable); counts to MLflow. Under a job
    array (``INDEX_TASKS_ENV``), the passages and vectors come from the array's parts instead."""
    import os

    import mlflow

    from ptwiki_llm.data.ingest import iter_articles, shard_paths
    from ptwiki_llm.models.refs import model_ref
    from ptwiki_llm.rag.index import IndexCounts, RagIndex, build_index, new_report
    from ptwiki_llm.rag.pointer import write_pointer
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, collection_name, open_store

    rag = config.rag
    embedder_ref = model_ref(config, rag.embedding.model)
    excluded = validated.quarantined_ids()
    array_spec = os.environ.get(INDEX_TASKS_ENV)
    with tracking.step_run(config, "index", pipeline_run_id):
        embedder, identity, chunker = _index_setup(config, validated.dataset_sha256, excluded)
        name = rag.store.collection or collection_name(rag.store.collection_prefix, validated.dataset_sha256,
                                                        embedder_ref.name, identity.fingerprint())
        spec = CollectionSpec(name=name, dimension=embedder.dimension, embedder=embedder.name,
                              distance=rag.hnsw.distance, chunking=chunking_fingerprint(rag.chunking),
                              embedding=embedder.fingerprint, identity=identity.fingerprint())
        total = validated.counts.accepted
        total = min(total, max_articles) if total and max_articles else total
        parts: list[dict[str, Any]] = []
        parts_dir = config.expand(rag.store.parts_dir)
        if array_spec:  # checked before the store is touched: a missing part writes nothing
            from ptwiki_llm.rag.index_parts import part_records

            tasks_spec = json.loads(Path(array_spec).read_text(encoding="utf-8"))
            keys = index_part_keys(identity.to_dict(), embedder.precision, max_articles, int(tasks_spec["tasks"]))
            parts = part_records(parts_dir, keys, lambda task: tasks_spec["log"].replace("%a", str(task)))
        with open_store(config) as store:
            store.open(spec)  # a mismatching existing collection raises here, before any write
            count_before = store.count()
            if array_spec:
                from ptwiki_llm.rag.index_parts import merge_parts

                report = merge_parts(parts_dir, parts, new_report(store, embedder), store, rag, total,
                                     show_progress)
            else:
                rows = iter_articles(shard_paths(Path(validated.articles_dir)), excluded, max_articles)
                report = build_index(rows, chunker, embedder, store, rag, total_articles=total,
                                     show_progress=show_progress)
        mlflow.log_params({
            "index.backend": report.backend, "index.collection": report.collection,
            "index.location": report.location, "index.embedder": report.embedder,
            "index.dimension": report.dimension, "index.device": embedder.device,
            "index.embedding.precision": embedder.precision,
            **{f"index.embedding.{k}": v or "" for k, v in embedder.identity.items()},
            **{f"index.chunking.{k}": v for k, v in rag.chunking.model_dump().items()},
            **{f"index.hnsw.{k}": v for k, v in rag.hnsw.model_dump().items()},
            "index.embedding.batch_size": rag.embedding.batch_size,
            "index.embedding.group_size": rag.embedding.group_size,
            "index.array_tasks": len(parts) or 1,
        })
        counts = IndexCounts(**{k: getattr(report, k) for k in IndexCounts.model_fields
                                if k not in ("quarantined_excluded", "store_count_before")},
                             quarantined_excluded=len(excluded), store_count_before=count_before)
        _log_counts("index", counts.model_dump())
        mlflow.log_metrics({"index.elapsed_s": report.elapsed_s, "index.embed_s": report.embed_s,
                            "index.write_s": report.write_s, "index.chunks_per_s": report.chunks_per_s,
                            "index.embedded_chars_per_s": report.embedded_chars / report.elapsed_s
                            if report.elapsed_s else 0.0})
        tracking.log_json(report.to_dict(), "index_report.json")
        tracking.log_json(identity.to_dict(), "index_identity.json")
    result = RagIndex(backend=report.backend, collection=report.collection, location=report.location,
                      embedder=report.embedder, dimension=report.dimension, embedding_precision=embedder.precision,
                      embedding_backend=embedder.identity, dataset_sha256=validated.dataset_sha256,
                      identity=identity.to_dict(), counts=counts,
                      array_parts=report.extra.get("array_parts", []))
    write_pointer(config, result)
    return result


# --- train -> register ---------------------------------------------------------------------------


def train_stage(config: Config, formatted: FormattedData, pipeline_run_id: str | None = None,
                show_progress: bool = True) -> TrainResult:
    """Formatted JSONL -> LoRA/QLoRA adapter (resumes from the run's latest checkpoint).

    On SIGUSR1 (SLURM's time-limit warning) it saves a checkpoint and raises TrainingPreempted, a SystemExit
    with code 75 that ends the process so the SLURM job script requeues it; on SIGTERM (scancel, Ctrl-C of the
    driver) it saves if it can and raises TrainingCancelled (code 143), never requeued. A rerun resumes.
    """
    import mlflow

    from ptwiki_llm.training import TrainingPreempted
    from ptwiki_llm.training.launch import train_adapter

    with tracking.step_run(config, "train", pipeline_run_id) as run:
        try:
            return train_adapter(config, formatted, run.info.run_id, show_progress)
        except TrainingPreempted as exc:
            mlflow.set_tags({"ptwiki.preempted": "true", "ptwiki.preempted_checkpoint": exc.checkpoint or "",
                             "ptwiki.preempted_by": exc.signal_name or ""})
            mlflow.end_run("KILLED")
            print(f"ptwiki-llm: {exc}", flush=True)
            raise


def register_stage(config: Config, trained: TrainResult, pipeline_run_id: str | None = None) -> RegisteredAdapter:
    """The trained adapter -> a new version of the registered model with alias ``challenger``."""
    from ptwiki_llm.registry import register_adapter

    return register_adapter(config, trained, pipeline_run_id)


# --- evaluate ------------------------------------------------------------------------------------


def evaluate_stage(config: Config, validated: ValidationResult, formatted: FormattedData,
                   registered: RegisteredAdapter | None = None, rag_index: RagIndex | None = None,
                   pipeline_run_id: str | None = None, show_progress: bool = True) -> EvaluationReport:
    """Arms base / base+rag / ft / ft+rag / champion on held-out text, knowledge probes and QA; report, plots,
    metrics with bootstrap intervals to MLflow; the promotion gate moves ``champion`` when the challenger wins.

    ``registered`` (the register step's output) names the challenger, else the registry's challenger alias;
    ``rag_index`` (the index step's output) names the Wikipedia collection, else the last one indexed.
    """
    import mlflow

    from ptwiki_llm.data.ingest import iter_articles, shard_paths
    from ptwiki_llm.evaluation.arms import arm_of, registry_versions
    from ptwiki_llm.evaluation.gate import Decision, apply_decision
    from ptwiki_llm.evaluation.run import EvaluationReport, run_evaluation
    from ptwiki_llm.rag.pointer import current_collection

    ev = config.evaluation
    versions = registry_versions(config, registered)
    collection = None
    if any(arm_of(name).rag for name in ev.arms):
        collection = rag_index.collection if rag_index else current_collection(config)
    excluded = validated.quarantined_ids()
    articles = iter_articles(shard_paths(Path(validated.articles_dir)), excluded)
    key = sha256_json({"dataset": validated.dataset_sha256, "eval": formatted.sha256("eval"),
                       "versions": [versions.challenger, versions.champion], "collection": collection,
                       "config": config_for_stage(config, "evaluate")})[:16]
    out_dir = config.expand(ev.out_dir) / key
    with tracking.step_run(config, "evaluate", pipeline_run_id) as run:

        def gate(decision: Decision) -> Decision:
            return apply_decision(config, decision, run.info.run_id)

        result = run_evaluation(config, articles=articles, formatted=formatted, versions=versions,
                                collection=collection, out_dir=out_dir, show_progress=show_progress, apply_gate=gate)
        mlflow.log_params({f"evaluation.{k}": json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                           for k, v in tracking.flatten(ev.model_dump()).items()})
        mlflow.log_params({"evaluation.challenger_version": versions.challenger or "",
                           "evaluation.champion_version": versions.champion or "",
                           "evaluation.collection": collection or "", "evaluation.report_dir": str(out_dir)})
        values = {**_interval_metrics("eval", result["metrics"]),
                  **_interval_metrics("eval.diff", {p.replace(" ", ""): m for p, m in result["differences"].items()})}
        values.update({tracking.metric_name(f"eval.time.{k}"): v for k, v in result["timings"].items()})
        mlflow.log_metrics({k: float(v) for k, v in values.items() if v == v})  # NaN (empty resamples) left out
        gate_result = result["gate"]
        mlflow.set_tags({"ptwiki.gate.outcome": gate_result["outcome"],
                         "ptwiki.gate.applied": str(gate_result["applied"]),
                         "ptwiki.gate.challenger": gate_result["challenger"] or "",
                         "ptwiki.gate.baseline": gate_result["baseline"]})
        mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        log_evaluation_views(result, out_dir, ev.mlflow_traces_per_arm)
    return EvaluationReport(dir=str(out_dir), report=str(out_dir / "report.md"),
                            report_html=str(out_dir / "report.html"), examples=str(out_dir / "examples.html"),
                            arms=result["arms"], metrics=result["metrics"], differences=result["differences"],
                            items=result["items"], gate=gate_result, versions=versions, timings=result["timings"],
                            mlflow_run_id=run.info.run_id)


def log_evaluation_views(result: dict[str, Any], out_dir: Path, traces_per_arm: int) -> None:
    """Per-item comparison tables, plots as images and RAG answers as traces, in the active MLflow run."""
    import mlflow

    from ptwiki_llm.evaluation.mlflow_log import log_plots, log_rag_traces, log_tables

    tables = log_tables(result["rows"])
    log_plots(out_dir, result["plots"])
    traces = log_rag_traces(result["rows"], traces_per_arm) if traces_per_arm else 0
    mlflow.set_tags({"ptwiki.eval.tables": ",".join(tables), "ptwiki.eval.traces": str(traces)})


def _interval_metrics(prefix: str, table: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """{name: {metric: interval}} -> MLflow metrics: the value, and .ci_low/.ci_high for its interval."""
    values = {}
    for name, metrics in table.items():
        for metric, interval in metrics.items():
            base = tracking.metric_name(f"{prefix}.{name}.{metric}")
            values.update({base: interval["value"], f"{base}.ci_low": interval["low"],
                           f"{base}.ci_high": interval["high"]})
    return values
