"""The evaluation where MLflow users look: per-item tables, plots as images, one trace per RAG answer.

Tables (``mlflow.log_table``, shown in the run's artifact view and compared across runs in the UI's
"Evaluation" / artifact compare view): for each task a wide table, one row per item with every arm's answer,
choice, scores and sources side by side, and a long one (one row per item and arm) to filter by arm.
Plots go in as images (``mlflow.log_image``). RAG answers of the QA task become MLflow traces with a
retrieval span (the passages, as documents) and a generation span (prompt, answer), tagged with the arm
and the item, so the trace view shows what was read and what was said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_TEXT_LIMIT = 2000  # characters per cell: tables stay loadable in the browser


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) > _TEXT_LIMIT:
        return value[:_TEXT_LIMIT] + " …"
    return value


_ITEM_KEYS = {"probes": ("item_id", "group", "kind", "question", "masked", "gold", "candidates"),
              "qa": ("item_id", "half", "question", "golds", "choices")}
_ARM_KEYS = {"probes": ("chosen", "correct", "cloze_chosen", "cloze_correct", "answer_in_sources",
                        "source_in_sources", "sources"),
             "qa": ("answer", "exact_match", "f1", "mc_chosen", "mc_correct", "answer_in_sources", "gold_rank",
                    "sources")}


def _source_titles(sources: list[dict[str, Any]] | None) -> str:
    return " | ".join(f"{s['title']}: {s['text'][:160]}" for s in sources or [])


def wide_table(task: str, by_arm: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """One row per item; the item's fields, then ``<arm>.<field>`` for every arm."""
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, rows in by_arm.items():
        for row in rows:
            by_item.setdefault(row["item_id"], {})[arm] = row
    records = []
    for item_id in sorted(by_item):
        arms = by_item[item_id]
        first = next(iter(arms.values()))
        record: dict[str, Any] = {key: first[key] for key in _ITEM_KEYS[task] if key in first}
        for arm, row in arms.items():
            for key in _ARM_KEYS[task]:
                if key in row:
                    record[f"{arm}.{key}"] = _source_titles(row[key]) if key == "sources" else row[key]
        records.append(record)
    keys = list(dict.fromkeys(key for record in records for key in record))
    return {key: [_cell(record.get(key)) for record in records] for key in keys}


def long_table(by_arm: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    rows = [row for arm_rows in by_arm.values() for row in arm_rows]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return {key: [_cell(_source_titles(row.get(key)) if key == "sources" else row.get(key)) for row in rows]
            for key in keys}


def log_tables(rows: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    import mlflow

    logged = []
    for task in ("probes", "qa"):
        by_arm = rows.get(task)
        if not by_arm:
            continue
        for kind, table in (("by_item", wide_table(task, by_arm)), ("by_item_and_arm", long_table(by_arm))):
            path = f"evaluation/tables/{task}_{kind}.json"
            mlflow.log_table(data=table, artifact_file=path)
            logged.append(path)
    return logged


def log_plots(out_dir: Path, plots: list[str]) -> None:
    import mlflow
    from PIL import Image

    for plot in plots:
        with Image.open(out_dir / plot) as image:
            mlflow.log_image(image.convert("RGB"), artifact_file=f"evaluation/images/{Path(plot).name}")


def log_rag_traces(rows: dict[str, dict[str, list[dict[str, Any]]]], limit_per_arm: int) -> int:
    """One trace per RAG answer of the QA task (at most ``limit_per_arm`` per arm); returns how many."""
    import mlflow
    from mlflow.entities import Document, SpanType

    count = 0
    for arm, arm_rows in (rows.get("qa") or {}).items():
        for row in [r for r in arm_rows if "sources" in r][:limit_per_arm]:
            with mlflow.start_span(name=f"{arm} answer", span_type=SpanType.CHAIN) as root:
                root.set_inputs({"question": row["question"]})
                root.set_attributes({"ptwiki.arm": arm, "ptwiki.item_id": row["item_id"], "ptwiki.half": row["half"]})
                with mlflow.start_span(name="retrieve", span_type=SpanType.RETRIEVER) as span:
                    span.set_inputs({"query": row["question"]})
                    span.set_outputs([Document(page_content=s["text"], metadata={"doc_uri": s["url"],
                                                                                 "title": s["title"]})
                                      for s in row["sources"]])
                with mlflow.start_span(name="generate", span_type=SpanType.LLM) as span:
                    span.set_inputs({"question": row["question"], "sources": len(row["sources"])})
                    span.set_outputs({"answer": row.get("answer"), "multiple_choice": row["mc_chosen"]})
                root.set_outputs({"answer": row.get("answer"), "golds": row["golds"], "f1": row.get("f1"),
                                  "mc_correct": row["mc_correct"]})
            count += 1
    flush = getattr(mlflow, "flush_trace_async_logging", None)
    if flush is not None:
        flush()
    return count
