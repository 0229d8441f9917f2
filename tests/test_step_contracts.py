"""What flows between steps is typed: each step returns a StepArtifact, and no code reads another step's output
by string keys (``formatted["summary"]["files"]``), which would fail at run time, three modules away."""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ptwiki_llm.artifacts import StepArtifact

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("ptwiki_llm", "steps", "pipelines")


@dataclass
class StepOutputs:
    names: set[str] = field(default_factory=set)  # "articles", "formatted", ... (the Annotated output names)
    classes: dict[str, type] = field(default_factory=dict)  # class name -> class
    producers: set[str] = field(default_factory=set)  # functions annotated to return one (index_stage, ...)


def step_outputs() -> StepOutputs:
    """The output name and class of every ZenML step in steps/, read from the source (no zenml import)."""
    found = StepOutputs()
    for path in sorted((REPO / "steps").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.FunctionDef) and _is_step(node)):
                continue
            returns = node.returns
            shown = ast.unparse(returns) if returns else None
            assert isinstance(returns, ast.Subscript) and ast.unparse(returns.value) == "Annotated", \
                f"{path.name}:{node.name} returns {shown}, not Annotated[Model, name]"
            cls_node, name_node = returns.slice.elts  # type: ignore[attr-defined]
            cls_name = ast.unparse(cls_node)
            found.names.add(name_node.value)
            found.classes[cls_name] = getattr(importlib.import_module(imported[cls_name]), cls_name)
    for folder in CHECKED:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef) and node.returns is not None \
                        and ast.unparse(node.returns) in found.classes:
                    found.producers.add(node.name)
    return found


def _is_step(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if ast.unparse(target) == "step":
            return True
    return False


def _string_key(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.Subscript | ast.Attribute):
        node = node.value
    return node


def _is_outputs_lookup(node: ast.AST) -> bool:
    """``outputs["x"]`` or ``summary.outputs["x"]``: a step output looked up by its name."""
    return (isinstance(node, ast.Subscript) and _string_key(node.slice)
            and ((isinstance(node.value, ast.Name) and node.value.id == "outputs")
                 or (isinstance(node.value, ast.Attribute) and node.value.attr == "outputs")))


def _is_producer_call(node: ast.AST, producers: set[str]) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
            and ast.unparse(node.func).split(".")[-1] in producers)


@dataclass
class Finding:
    tracked: set[str]
    violations: list[str]


def string_key_reads(source: str, outputs: StepOutputs, filename: str = "<snippet>") -> Finding:
    """Reads of a step output by string key: ``x["k"]`` / ``x.get("k")`` on a step output held in ``x``, and any
    chain of two string keys rooted at one (``outputs["formatted"]["summary"]``, ``formatted.summary["files"]["x"]``).

    A name holds a step output in a function when it is a parameter named like a step output or annotated with a
    step output class, or is assigned from an ``outputs[...]`` lookup or a call of a function annotated to return
    a step output class (``index_stage(...)``, ``run_training(...)``)."""
    tree = ast.parse(source)
    tracked_all: set[str] = set()
    violations: list[str] = []
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        tracked: set[str] = set()
        args = function.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            annotation = ast.unparse(arg.annotation) if arg.annotation else ""
            if arg.arg in outputs.names or any(cls in annotation for cls in outputs.classes):
                tracked.add(arg.arg)
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and (_is_outputs_lookup(node.value) or _is_producer_call(node.value, outputs.producers)):
                tracked.add(node.targets[0].id)
        tracked_all |= {f"{function.name}:{name}" for name in tracked}

        def held(node: ast.AST, names: set[str] = tracked) -> bool:
            root = _root(node)
            return (isinstance(root, ast.Name) and root.id in names) or _is_outputs_lookup(node)

        for node in ast.walk(function):
            where = f"{filename}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}"
            if isinstance(node, ast.Subscript) and _string_key(node.slice):
                inner = node.value
                direct = isinstance(inner, ast.Name) and inner.id in tracked
                chained = isinstance(inner, ast.Subscript) and _string_key(inner.slice) and held(inner)
                if direct or chained:
                    violations.append(where)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and node.args and _string_key(node.args[0]):
                owner = node.func.value
                if (isinstance(owner, ast.Name) and owner.id in tracked) or _is_outputs_lookup(owner):
                    violations.append(where)
    return Finding(tracked_all, violations)


@pytest.fixture(scope="module")
def outputs() -> StepOutputs:
    return step_outputs()


def test_every_step_returns_a_step_artifact(outputs):
    assert outputs.names == {"articles", "validated", "formatted", "trained", "registered", "rag_index", "evaluation"}
    assert {"ingest_stage", "validate_stage", "format_stage", "index_stage", "train_stage", "register_stage",
            "evaluate_stage", "run_training", "train_adapter", "register_adapter"} <= outputs.producers
    for name, cls in outputs.classes.items():
        assert issubclass(cls, StepArtifact), f"{name} is not a StepArtifact"
        assert cls.model_config.get("extra") == "forbid" and cls.model_config.get("frozen"), name


def test_every_step_stores_its_output_with_the_artifact_materializer():
    for path in sorted((REPO / "steps").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and _is_step(n)):
            decorator = ast.unparse(node.decorator_list[0])
            assert "output_materializers=StepArtifactMaterializer" in decorator, f"{path.name}: {decorator}"


# Verbatim reads the checker must catch (the code before step outputs were typed), and reads it must allow.
OLD_READS = '''
def evaluate_stage(config, validated, formatted, registered=None, rag_index=None):
    collection = rag_index["collection"] if rag_index else None
    key = {"dataset": validated["dataset_sha256"], "eval": formatted["summary"]["files"]["eval"]["sha256"]}

def _print_outputs(outputs, config, mlflow_run):
    if "articles" in outputs:
        articles = outputs["articles"]
        counts = articles["counts"]
    heldout = outputs["trained"].get("heldout") or {}
    table.add_row("RAG index", outputs["rag_index"]["collection"])

def run_key(config, formatted: FormattedData, base_manifest):
    summary_files = formatted.summary["files"]["train"]

def lineage(config, trained: TrainResult):
    return trained.get("dataset_sha256")

def command(cfg):
    result = run_pipeline(cfg, "index").outputs["rag_index"]
    summary = index_stage(cfg, None)
    return result["counts"], summary["collection"]
'''
ALLOWED_READS = '''
def _print_outputs(outputs, config, mlflow_run):
    if "articles" in outputs:
        articles = outputs["articles"]
        table.add_row(articles.dir, articles.counts.read, articles.counts.skipped)
    evaluation = outputs["evaluation"]
    return evaluation.metrics["base"], evaluation.items["qa"]

def local_dicts(config):
    articles = {"train": 0, "eval": 0}
    articles["train"] += 1
    manifest = json.loads(text)
    return manifest["counts"]["read"], config.to_dict()["data"]["format"]
'''


def test_the_checker_catches_string_key_reads_of_step_outputs(outputs):
    found = string_key_reads(OLD_READS, outputs)
    caught = "\n".join(found.violations)
    for read in ('rag_index["collection"]', 'validated["dataset_sha256"]', 'formatted["summary"]["files"]',
                 'articles["counts"]', "outputs['trained'].get", 'outputs["rag_index"]["collection"]',
                 'formatted.summary["files"]["train"]', 'trained.get("dataset_sha256")', 'result["counts"]',
                 'summary["collection"]'):
        assert read.replace('"', "'") in caught.replace('"', "'"), f"missed {read}:\n{caught}"
    assert string_key_reads(ALLOWED_READS, outputs).violations == []


def test_no_code_reads_a_step_output_by_string_keys(outputs):
    violations: list[str] = []
    tracked: set[str] = set()
    for folder in CHECKED:
        for path in sorted((REPO / folder).rglob("*.py")):
            found = string_key_reads(path.read_text(encoding="utf-8"), outputs, str(path.relative_to(REPO)))
            violations += found.violations
            tracked |= {f"{path.relative_to(REPO)}:{name}" for name in found.tracked}
    assert not violations, "step outputs read by string keys (read their attributes):\n" + "\n".join(violations)
    # the checker saw the consumers: the stages, the CLI's tables, the trainer, the registry, evaluation
    for expected in ("ptwiki_llm/stages.py:evaluate_stage:formatted", "ptwiki_llm/cli.py:_print_outputs:articles",
                     "ptwiki_llm/cli.py:index:result", "ptwiki_llm/training/trainer.py:run_key:formatted",
                     "ptwiki_llm/registry.py:lineage:trained", "ptwiki_llm/evaluation/run.py:prepare_items:formatted",
                     "ptwiki_llm/evaluation/arms.py:registry_versions:registered"):
        assert expected in tracked, f"{expected} not among {sorted(tracked)}"


def test_artifact_metadata_lists_scalar_fields_and_survives_nan():
    from ptwiki_llm.data.ingest import IngestCounts, IngestResult
    from ptwiki_llm.evaluation.arms import Versions
    from ptwiki_llm.evaluation.bootstrap import Interval
    from ptwiki_llm.evaluation.gate import Decision
    from ptwiki_llm.evaluation.run import EvaluationReport

    ingested = IngestResult(dir="/d", dataset_sha256="a" * 64, manifest_sha256="b" * 64,
                            counts=IngestCounts(read=3, kept=2, skipped={"redirect": 1}))
    assert ingested.metadata() == {"dir": "/d", "dataset_sha256": "a" * 64, "manifest_sha256": "b" * 64,
                                   "counts.read": 3, "counts.kept": 2, "counts.skipped.redirect": 1}
    with pytest.raises(ValueError, match="extra"):
        IngestResult.model_validate({**ingested.model_dump(), "surprise": 1})
    report = EvaluationReport(
        dir="/e", report="/e/report.md", report_html="/e/report.html", examples="/e/examples.html", arms=["base"],
        metrics={"base": {"lm.perplexity": Interval(float("nan"), 1.0, 2.0, 3)}}, differences={}, items={"lm": 3},
        gate=Decision("keep", None, "base", ["no challenger"]), versions=Versions(None, None),
        timings={"total_s": float("nan")}, mlflow_run_id="r")
    again = EvaluationReport.model_validate_json(report.model_dump_json())
    assert again.metrics["base"]["lm.perplexity"].value != again.metrics["base"]["lm.perplexity"].value  # NaN
    assert again.gate.reasons == ["no challenger"] and again.versions == Versions(None, None)
    metadata = report.metadata()
    assert metadata["gate.outcome"] == "keep" and metadata["items.lm"] == 3
    assert "timings.total_s" not in metadata and not any(key.startswith("metrics.") for key in metadata)
