"""Validate stage: Great Expectations over per-article features; failing articles are quarantined.

The suite runs in an ephemeral GX context (nothing is written outside ``out_dir``) over the
features DataFrame (``features.py``), never over the texts. Outputs in ``out_dir``:

- ``features.parquet``: one row per article;
- ``quarantine.parquet``: one row per (article, failed expectation), columns id, title,
  expectation (``"<expectation type>(<column>)"``) and value (the observed value, as text);
- ``validation.json``: ``{"summary": ..., "gx_result": ...}``;
- ``data_docs/index.html``: the GX Data Docs of this run.

Duplicate texts are checked twice, on purpose. ``expect_column_values_to_be_unique(text_sha256)``
flags every copy, the first one too, so it is in the suite for the report only (``meta.quarantine``
is false) and its count lands in ``reported_only``. What quarantines is
``expect_column_values_to_be_null(duplicate_of)``: ``duplicate_of`` is set on every copy but the
one with the lowest id, so exactly the later copies go and the first is kept. Hence
``reported_only[unique(text_sha256)]`` = ``failures[null(duplicate_of)]`` + number of duplicate
groups.

``import great_expectations`` takes ~5 s and ~265 MB, so it happens when a validation runs, not
when this module is imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.config import ValidateConfig
from ptwiki_llm.data.features import FEATURES_SCHEMA, compute_features
from ptwiki_llm.data.ingest import IngestCounts
from ptwiki_llm.errors import UserError

log = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "validation.json"
DATA_DOCS_DIR = "data_docs"

SUITE_NAME = "ptwiki_articles"
# The ephemeral context already owns a "local_site" (in a temp folder); ours needs its own name.
DOCS_SITE = "ptwiki_validation"
# Lists in the stored GX result are cut to this length: at 1.1M articles a COMPLETE result can
# list hundreds of thousands of values, and quarantine.parquet already holds every failing row.
GX_LIST_CAP = 1000
_CAPPED_KEYS = ("unexpected_list", "unexpected_index_list")

QUARANTINE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("title", pa.string()),
        ("expectation", pa.string()),
        ("value", pa.string()),
    ]
)


@dataclass(frozen=True)
class ValidationReport:
    total: int
    kept: int
    quarantined: int
    """Articles (feature rows) failing at least one expectation; = distinct ids when ids are unique."""
    quarantined_share: float
    max_failing_share: float
    passed: bool
    """quarantined_share <= max_failing_share (GX's own "success" is false as soon as one row fails)."""
    failures_by_expectation: dict[str, int]
    """Failing rows per quarantining expectation, every one listed (0 included), in suite order."""
    examples: dict[str, list[int]]
    """Up to ``examples_in_error`` failing ids per quarantining expectation."""
    reported_only: dict[str, int]
    """Failing rows of expectations that are reported but do not quarantine."""
    quarantine_path: Path
    features_path: Path
    report_path: Path
    data_docs_dir: Path

    @property
    def data_docs_index(self) -> Path:
        return self.data_docs_dir / "index.html"

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class ValidationCounts(IngestCounts):
    """The ingest counts plus what validation took out: accepted = kept - quarantined."""

    quarantined: int
    accepted: int


class ValidationResult(StepArtifact):
    """The validate step's output: the ingested shards, the validation folder and what it accepted."""

    articles_dir: str
    dataset_sha256: str
    dir: str
    quarantine: str
    counts: ValidationCounts

    @property
    def data_docs_index(self) -> Path:
        return Path(self.dir) / DATA_DOCS_DIR / "index.html"

    def quarantined_ids(self) -> set[int]:
        return quarantined_ids(Path(self.dir))


class ValidationFailed(UserError):
    """More articles were quarantined than ``max_failing_share`` allows."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(failure_message(report))

    def __reduce__(self) -> tuple[type[ValidationFailed], tuple[ValidationReport]]:
        # the default would rebuild from the message; a step runner may pickle the exception
        return (type(self), (self.report,))


def failure_message(report: ValidationReport, top: int = 3) -> str:
    if report.total == 0:
        return (
            "validation failed: there are no articles to validate; ingest kept nothing "
            "(see skipped.parquet and the counts in manifest.json next to the shards)"
        )
    failing = sorted(
        ((name, n) for name, n in report.failures_by_expectation.items() if n),
        key=lambda item: -item[1],
    )
    parts = []
    for name, n in failing[:top]:
        ids = report.examples.get(name) or []
        parts.append(f"{name}: {n}" + (f" (e.g. ids {', '.join(map(str, ids))})" if ids else ""))
    worst = "; ".join(parts)
    return (
        f"validation failed: {report.quarantined} of {report.total} articles quarantined "
        f"({report.quarantined_share:.2%}), above the allowed {report.max_failing_share:.2%}. "
        f"Most failures: {worst or 'none'}. "
        f"Every failing row: {report.quarantine_path}; Data Docs: {report.data_docs_index}"
    )


def raise_if_failed(report: ValidationReport) -> None:
    """Raise ``ValidationFailed`` when the quarantined share is above the threshold, or nothing came in."""
    if not report.passed or report.total == 0:
        raise ValidationFailed(report)


def quarantined_ids(out_dir: Path) -> set[int]:
    """Distinct ids in ``out_dir/quarantine.parquet`` (rows with a null id cannot be named, so are left out)."""
    ids = pq.read_table(Path(out_dir) / QUARANTINE_FILE, columns=["id"]).column("id")
    return {i for i in ids.to_pylist() if i is not None}


# --- the suite --------------------------------------------------------------------------------


def _label(expectation_type: str, column: str) -> str:
    return f"{expectation_type}({column})"


def _build_expectations(gxe: Any, cfg: ValidateConfig) -> list[Any]:
    report_only = {
        "quarantine": False,
        "why": "flags every copy, the first too; duplicate_of being null quarantines the later ones",
    }
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeBetween(column="title_chars", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(
            column="text_chars", min_value=cfg.min_text_chars, max_value=cfg.max_text_chars
        ),
        gxe.ExpectColumnValuesToBeBetween(column="markup_per_kchar", max_value=cfg.max_markup_per_kchar),
        gxe.ExpectColumnValuesToBeBetween(column="portuguese_score", min_value=cfg.min_portuguese_score),
        gxe.ExpectColumnValuesToBeNull(
            column="duplicate_of",
            notes="duplicate_of is the lowest id with the same normalized text; the first copy keeps null",
        ),
        gxe.ExpectColumnValuesToBeUnique(
            column="text_sha256",
            severity="warning",
            meta=report_only,
            notes="Reported only: the later copies are quarantined by duplicate_of being null.",
        ),
    ]


@contextlib.contextmanager
def _quiet_gx() -> Iterator[None]:
    # GX logs import and docs bookkeeping at INFO (one module pins its own logger to INFO when
    # imported) and warns about pandas internals; none of it helps a pipeline log, and real errors
    # still raise. So: quiet the root GX logger, import, then quiet every pinned GX logger too;
    # the levels are restored on the way out.
    root = logging.getLogger("great_expectations")
    saved = {root: root.level}
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
            warnings.filterwarnings("ignore", category=FutureWarning)
            import great_expectations  # noqa: F401

            gx_names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("great_expectations.")]
            for logger in map(logging.getLogger, gx_names):
                if logger.level != logging.NOTSET:
                    saved[logger] = logger.level
                    logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)


def _run_gx(features: pd.DataFrame, cfg: ValidateConfig, docs_dir: Path) -> dict[str, Any]:
    """Run the suite with result_format COMPLETE, build Data Docs into ``docs_dir``; the result dict."""
    with _quiet_gx():
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        batch_def = (
            ctx.data_sources.add_pandas("ptwiki")
            .add_dataframe_asset("article_features")
            .add_batch_definition_whole_dataframe("all_articles")
        )
        suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
        for expectation in _build_expectations(gxe, cfg):
            suite.add_expectation(expectation)
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name="ptwiki_articles_validation", data=batch_def, suite=suite)
        )
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name="ptwiki_validate",
                validation_definitions=[vd],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
                # COMPLETE: every unexpected row index, which the quarantine is built from
                result_format={"result_format": "COMPLETE"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": features})
        (validation,) = result.run_results.values()
        return validation.to_json_dict()


# --- from the GX result to quarantine and report ----------------------------------------------


def _value_text(value: Any) -> str:
    return "null" if value is None or value is pd.NA else str(value)


def _quarantine_rows(
    features: pd.DataFrame, gx_result: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """(quarantine rows, failures per quarantining expectation, failures per report-only one)."""
    parts: list[pd.DataFrame] = []
    failures: dict[str, int] = {}
    reported: dict[str, int] = {}
    for order, item in enumerate(gx_result["results"]):
        config = item["expectation_config"]
        column = config["kwargs"]["column"]
        label = _label(config["type"], column)
        if item.get("exception_info", {}).get("raised_exception"):
            raise RuntimeError(f"{label} could not be evaluated: {item['exception_info']}")
        rows = [int(i) for i in item["result"].get("unexpected_index_list") or []]
        if (config.get("meta") or {}).get("quarantine", True) is False:
            reported[label] = len(rows)
            continue
        failures[label] = len(rows)
        if not rows:
            continue
        picked = features.iloc[rows]
        parts.append(
            pd.DataFrame(
                {
                    "_row": rows,
                    "_order": order,
                    # .array keeps the nullable Int64 (a null id must stay null, not become NaN)
                    "id": picked["id"].array,
                    "title": picked["title"].array,
                    "expectation": label,
                    "value": [_value_text(v) for v in picked[column].tolist()],
                }
            )
        )
    if not parts:
        return pd.DataFrame({name: [] for name in QUARANTINE_SCHEMA.names}), failures, reported
    # grouped by article (in corpus order), then by expectation (in suite order)
    rows_df = pd.concat(parts, ignore_index=True).sort_values(["_row", "_order"], kind="stable")
    return rows_df.drop(columns=["_order"]), failures, reported


def _cap_lists(gx_result: dict[str, Any]) -> dict[str, Any]:
    for item in gx_result.get("results", []):
        result = item.get("result") or {}
        for key in _CAPPED_KEYS:
            if isinstance(result.get(key), list) and len(result[key]) > GX_LIST_CAP:
                result[key] = result[key][:GX_LIST_CAP]
        # the query string repeats the whole index list
        query = result.get("unexpected_index_query")
        if isinstance(query, str) and len(query) > 10 * GX_LIST_CAP:
            result["unexpected_index_query"] = query[: 10 * GX_LIST_CAP] + " ..."
    return gx_result


def validate_features(features: pd.DataFrame, out_dir: Path, cfg: ValidateConfig) -> ValidationReport:
    """Validate already computed features (see ``validate_articles``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = features.reset_index(drop=True)  # GX reports positions; iloc must agree

    features_path = out_dir / FEATURES_FILE
    pq.write_table(pa.Table.from_pandas(features, schema=FEATURES_SCHEMA, preserve_index=False), features_path)

    docs_dir = out_dir / DATA_DOCS_DIR
    # pages of an earlier run in the same folder would show up in this run's index
    shutil.rmtree(docs_dir, ignore_errors=True)
    gx_result = _run_gx(features, cfg, docs_dir)

    quarantine, failures, reported = _quarantine_rows(features, gx_result)
    quarantine_path = out_dir / QUARANTINE_FILE
    pq.write_table(
        pa.Table.from_pandas(quarantine[QUARANTINE_SCHEMA.names], schema=QUARANTINE_SCHEMA, preserve_index=False),
        quarantine_path,
    )

    total = len(features)
    quarantined = int(quarantine["_row"].nunique()) if len(quarantine) else 0
    share = quarantined / total if total else 0.0
    examples: dict[str, list[int]] = {}
    for label in failures:
        ids = quarantine.loc[quarantine["expectation"] == label, "id"].dropna().drop_duplicates()
        examples[label] = [int(i) for i in ids.head(cfg.examples_in_error)]

    report = ValidationReport(
        total=total,
        kept=total - quarantined,
        quarantined=quarantined,
        quarantined_share=share,
        max_failing_share=cfg.max_failing_share,
        passed=share <= cfg.max_failing_share,
        failures_by_expectation=failures,
        examples=examples,
        reported_only=reported,
        quarantine_path=quarantine_path,
        features_path=features_path,
        report_path=out_dir / REPORT_FILE,
        data_docs_dir=docs_dir,
    )
    summary = {
        "total": total,
        "passed": report.kept,
        "quarantined": quarantined,
        "quarantined_share": share,
        "max_failing_share": cfg.max_failing_share,
        "step_passed": report.passed,
        "failures_by_expectation": failures,
        "examples": examples,
        "reported_only": reported,
        "gx_success": gx_result.get("success"),
        "config": cfg.model_dump(mode="json"),
        "gx_lists_capped_at": GX_LIST_CAP,
        "files": {
            "features": FEATURES_FILE,
            "quarantine": QUARANTINE_FILE,
            "data_docs": f"{DATA_DOCS_DIR}/index.html",
        },
    }
    report.report_path.write_text(
        json.dumps({"summary": summary, "gx_result": _cap_lists(gx_result)}, indent=2, default=str),
        encoding="utf-8",
    )
    log.info(
        "validated %d articles: %d quarantined (%.2f%%, allowed %.2f%%)",
        total,
        quarantined,
        100 * share,
        100 * cfg.max_failing_share,
    )
    return report


def validate_articles(
    shard_paths: list[Path], out_dir: Path, cfg: ValidateConfig, workers: int = 1
) -> ValidationReport:
    """Compute features of the article shards, run the suite, write the outputs listed above.

    Never raises for bad articles (they are quarantined); call ``raise_if_failed`` on the report
    to fail when too many were.
    """
    return validate_features(compute_features(shard_paths, workers=workers), out_dir, cfg)
