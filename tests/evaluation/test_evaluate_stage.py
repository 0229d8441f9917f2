"""evaluate_stage end to end: real SmolLM2, real E5 index, a registered challenger, MLflow, report files.

The challenger is a LoRA adapter straight from initialisation (B = 0), so it computes exactly what the
base model computes: the ft arms must score exactly like the base arms on the same items, and the gate
must keep it (no improvement).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptwiki_llm.config import Config
from ptwiki_llm.evaluation.arms import EvaluationSetupError, Versions, plan_arms
from tests.conftest import stage_slice
from tests.evaluation.test_knowledge import CITIES, _document, squad_file
from tests.training.conftest import examples, tiny_config, write_formatted


def test_arms_without_a_challenger_say_what_to_run():
    config = Config()
    with pytest.raises(EvaluationSetupError, match="ptwiki-llm run"):
        plan_arms(config, Versions(challenger=None, champion=None))
    config.evaluation.arms = ["base", "base+rag", "champion"]
    arms, notes = plan_arms(config, Versions(challenger=None, champion=None))
    assert [a.name for a in arms] == ["base", "base+rag"] and "none registered" in notes[0]
    arms, notes = plan_arms(config, Versions(challenger="3", champion="3"))
    assert "is the challenger" in notes[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_store, corpus, asset_folders):
    """Config, an index of the 40-article corpus, a registered zero-init adapter, a formatted split, a QA file."""
    from peft import LoraConfig, get_peft_model

    from ptwiki_llm.data.knowledge import write_knowledge
    from ptwiki_llm.models.runtime import load_causal_lm
    from ptwiki_llm.registry import register_adapter
    from ptwiki_llm.stages import index_stage
    from ptwiki_llm.training.result import HeldoutComparison, TrainMetrics, TrainResult
    from ptwiki_llm.training.trainer import base_pointer

    root = tmp_path_factory.mktemp("evaluate")
    qa_file = squad_file(root, [_document(*c, unanswerable=i == 0) for i, c in enumerate(CITIES[:4])], "qa_v2.json.gz")
    config = tiny_config(root / "wd", model_store)
    config.asset_path = [str(p) for p in asset_folders]
    config.rag.chunking.min_chunk_chars = 10
    config.evaluation.probes.count = 4
    config.evaluation.probes.heldout_share = 0.5
    config.evaluation.lm.max_texts = 2
    config.evaluation.lm.max_length = 64
    config.data.knowledge.file = str(qa_file)
    config.evaluation.qa.distractors = 2
    config.evaluation.qa.max_questions = 2
    config.evaluation.lm.format_texts = 2
    config.evaluation.max_new_tokens = 6
    config.evaluation.rag_k = 2
    config.evaluation.bootstrap.samples = 200
    config.data.format.eval_fraction = 0.3  # enough held-out articles among 40
    rag_index = index_stage(stage_slice(config, "index"), corpus["validated"], show_progress=False)
    model, _ = load_causal_lm(config)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    adapter = root / "adapter"
    peft.save_pretrained(str(adapter))
    untrained = TrainMetrics(global_step=0, resumed_from_step=0, train_runtime_s=None, train_loss_mean=None,
                             tokens_this_session=0, tokens_per_s=None, step_time_s=None, tokens_per_s_wall=None,
                             peak_memory_mb=0.0, model_load_s=0.0, last_eval_loss=None)
    registered = register_adapter(config, TrainResult(
        status="completed", run_dir=str(root), adapter_dir=str(adapter), base=base_pointer(config), train="",
        eval=None, dataset_sha256=None, train_sha256=None, eval_sha256=None, config_sha256=config.digest(),
        train_config={}, device="cpu", dtype="float32", mixed_precision="no", world_size=1, examples={},
        metrics=untrained, heldout=HeldoutComparison(), mlflow_run_id=None))
    formatted = write_formatted(root / "formatted", examples(), examples(1))
    write_knowledge(qa_file, config.data.knowledge, config.seed, root / "formatted")
    formatted = formatted.model_copy(update={"knowledge": str(root / "formatted" / "knowledge.json"),
                                             "knowledge_train": str(root / "formatted" / "knowledge_train.jsonl")})
    return {"config": config, "rag_index": rag_index, "registered": registered, "formatted": formatted,
            "validated": corpus["validated"]}


@pytest.mark.slow
def test_evaluate_stage_end_to_end(setup):
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.stages import evaluate_stage

    config = setup["config"]
    result = evaluate_stage(stage_slice(config, "evaluate"), setup["validated"], setup["formatted"],
                            setup["registered"], setup["rag_index"],
                            pipeline_run_id="pipeline-eval", show_progress=False)
    out = Path(result.dir)
    assert result.arms == ["base", "base+rag", "ft", "ft+rag"]  # no champion yet
    for name in ("report.md", "report.html", "examples.html", "summary.json", "probes.jsonl", "plots/probes.png",
                 "plots/qa.png", "plots/lm.png", "plots/lm_format.png", "items/probes.jsonl", "items/qa.jsonl",
                 "items/lm.jsonl", "items/lm_format.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    qa_counts = summary["counts"]["qa"]["qa_v2"]
    assert qa_counts["skipped_unanswerable"] == 1 and qa_counts["offset_mismatches"] == 4
    assert qa_counts["evaluated_seen"] == 2 and qa_counts["evaluated_heldout"] == 2 and result.items["qa"] == 4
    assert result.items["lm"] == 2 and result.items["lm_format"] == 2 and result.items["probes"] == 4
    assert set(summary["retrieval_modes"]) == {"vector", "bm25", "hybrid(alpha=0.75)"}
    assert summary["prompt_formats"] == {"base": "chat", "base+rag": "chat", "ft": "alpaca", "ft+rag": "alpaca"}

    # a zero-init adapter computes what the base computes: where the prompts are the same, the scores are too
    base, ft = result.metrics["base"], result.metrics["ft"]
    for metric in ("probes.cloze_accuracy", "probes.gold_logprob", "lm.bits_per_byte", "lm_format.bits_per_byte"):
        assert ft[metric].value == pytest.approx(base[metric].value, abs=1e-4), metric
    for metric in ("qa.mc_accuracy.seen", "qa.mc_accuracy.heldout", "qa.f1.seen", "qa.f1.heldout", "probes.accuracy",
                   "probes.accuracy.heldout"):
        assert metric in ft and metric in result.metrics["ft+rag"], metric
    rag = result.metrics["base+rag"]
    assert {"probes.source_in_sources", "probes.answer_in_sources", "qa.recall@1", "qa.answer_in_sources"} <= set(rag)
    probe_rows = [json.loads(line) for line in (out / "items/probes.jsonl").read_text().splitlines()]
    for row in probe_rows:
        assert row["question"] != row["masked"] and row["masked"].replace("____", "") not in row["question"]
    rows = [json.loads(line) for line in (out / "items/qa.jsonl").read_text().splitlines()]
    rag_rows = [r for r in rows if r["arm"] == "base+rag"]
    assert all(r["sources"] and r["gold_rank"] is not None for r in rag_rows)  # four paragraphs, two passages each
    assert {r["half"] for r in rows} == {"seen", "heldout"}

    assert result.gate.outcome == "keep" and not result.gate.applied
    client = MlflowClient()
    version = client.get_model_version(config.registry.model_name, setup["registered"].version)
    assert version.tags["ptwiki.gate.outcome"] == "keep"
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["ptwiki.step"] == "evaluate" and run.data.tags["ptwiki.gate.outcome"] == "keep"
    assert "eval.base.probes.accuracy" in run.data.metrics and "eval.diff.ft-base.qa.f1.ci_low" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/report.html", "evaluation/examples.html"} <= artifacts
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/tables")}
    assert {"evaluation/tables/qa_by_item.json", "evaluation/tables/probes_by_item.json"} <= tables
    table_path = client.download_artifacts(run.info.run_id, "evaluation/tables/qa_by_item.json")
    table = json.loads(Path(table_path).read_text())
    assert {"question", "golds", "half", "base.answer", "ft+rag.answer", "ft+rag.sources"} <= set(table["columns"])
    images = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/images")}
    assert "evaluation/images/qa.png" in images
    import mlflow

    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    assert len(traces) == 8  # 4 questions x 2 RAG arms
    report = (out / "report.md").read_text()
    assert "closed-book" in report and "| probes.accuracy ↑ |" in report and "bm25" in report
    assert set(summary["precision"]) == {"base", "ft"} and "- Precision: base: float32 weights" in report
