"""evaluate_stage end to end: real SmolLM2, real E5 index, a registered challenger, MLflow, report files.

The challenger is a LoRA adapter straight from initialisation (B = 0), so it computes exactly what the
base model computes: the ft arms must score exactly like the base arms on the same items, and the gate
must keep it (no improvement).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ptwiki_llm.config import Config
from ptwiki_llm.evaluation.arms import EvaluationSetupError, Versions, plan_arms
from tests.training.conftest import examples, tiny_config, write_formatted


def _qa(qid: str, question: str, answer: str, start: int, impossible: bool = False) -> dict:
    answers = [] if impossible else [{"text": answer, "answer_start": start}]
    return {"id": qid, "question": question, "answers": answers, "is_impossible": impossible}


CONTEXT = "Lisboa é a capital de Portugal. A cidade fica na foz do rio Tejo."
SQUAD_V2 = {"version": "v2.0", "data": [{"title": "Lisboa", "paragraphs": [{"context": CONTEXT, "qas": [
    _qa("q1", "Qual é a capital de Portugal?", "Lisboa", 0),
    _qa("q2", "Em que rio fica Lisboa?", "rio Tejo", 3),  # offset off: tolerated and counted
    _qa("q3", "Quantos habitantes tem Lisboa?", "", 0, impossible=True),  # skipped and counted
]}]}]}


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

    from ptwiki_llm.models import load_causal_lm
    from ptwiki_llm.registry import register_adapter
    from ptwiki_llm.stages import index_stage
    from ptwiki_llm.training.trainer import base_pointer

    root = tmp_path_factory.mktemp("evaluate")
    qa_file = root / "qa_v2.json.gz"
    qa_file.write_bytes(gzip.compress(json.dumps(SQUAD_V2).encode()))
    config = tiny_config(root / "wd", model_store)
    config.asset_path = [str(p) for p in asset_folders]
    config.rag.chunking.min_chunk_chars = 10
    config.evaluation.probes.count = 4
    config.evaluation.probes.heldout_share = 0.5
    config.evaluation.lm.max_texts = 2
    config.evaluation.lm.max_length = 64
    config.evaluation.qa.files = [str(qa_file)]
    config.evaluation.max_new_tokens = 6
    config.evaluation.rag_k = 2
    config.evaluation.bootstrap.samples = 200
    config.data.format.eval_fraction = 0.3  # enough held-out articles among 40
    rag_index = index_stage(config, corpus["validated"], show_progress=False)
    model, _ = load_causal_lm(config)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    adapter = root / "adapter"
    peft.save_pretrained(str(adapter))
    registered = register_adapter(config, {"status": "completed", "adapter_dir": str(adapter),
                                           "base": base_pointer(config), "metrics": {}, "heldout": {}})
    formatted = write_formatted(root / "formatted", examples(), examples(1))
    return {"config": config, "rag_index": rag_index, "registered": registered, "formatted": formatted,
            "validated": corpus["validated"]}


@pytest.mark.slow
def test_evaluate_stage_end_to_end(setup):
    from mlflow.tracking import MlflowClient

    from ptwiki_llm.stages import evaluate_stage

    config = setup["config"]
    result = evaluate_stage(config, setup["validated"], setup["formatted"], setup["registered"], setup["rag_index"],
                            pipeline_run_id="pipeline-eval", show_progress=False)
    out = Path(result["dir"])
    assert result["arms"] == ["base", "base+rag", "ft", "ft+rag"]  # no champion yet
    for name in ("report.md", "report.html", "examples.html", "summary.json", "probes.jsonl", "plots/probes.png",
                 "plots/qa.png", "plots/lm.png", "items/probes.jsonl", "items/qa.jsonl", "items/lm.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    qa_counts = summary["counts"]["qa"]["qa_v2"]
    assert qa_counts["skipped_unanswerable"] == 1 and qa_counts["offset_mismatches"] == 1
    assert qa_counts["evaluated"] == 2 and result["items"]["qa"] == 2 and result["items"]["lm"] == 2
    assert result["items"]["probes"] == 4

    # a zero-init adapter computes what the base computes: same items, same prompts, same scores
    base, ft = result["metrics"]["base"], result["metrics"]["ft"]
    for metric in ("probes.accuracy", "probes.gold_logprob", "lm.bits_per_byte", "qa.f1"):
        assert ft[metric]["value"] == pytest.approx(base[metric]["value"], abs=1e-4), metric
    rows = [json.loads(line) for line in (out / "items/qa.jsonl").read_text().splitlines()]
    answers = {(r["arm"], r["item_id"]): r["answer"] for r in rows}
    assert all(answers[("ft", item)] == answers[("base", item)] for arm, item in answers if arm == "base")
    rag_rows = [r for r in rows if r["arm"] == "base+rag"]
    assert all(r["sources"] and r["gold_rank"] is not None for r in rag_rows)  # two paragraphs' worth of chunks

    assert result["gate"]["outcome"] == "keep" and not result["gate"]["applied"]
    client = MlflowClient()
    version = client.get_model_version(config.registry.model_name, setup["registered"]["version"])
    assert version.tags["ptwiki.gate.outcome"] == "keep"
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["ptwiki.step"] == "evaluate" and run.data.tags["ptwiki.gate.outcome"] == "keep"
    assert "eval.base.probes.accuracy" in run.data.metrics and "eval.diff.ft-base.qa.f1.ci_low" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/report.html", "evaluation/examples.html"} <= artifacts
    report = (out / "report.md").read_text()
    assert "closed-book" in report and "| probes.accuracy ↑ |" in report
    assert set(summary["precision"]) == {"base", "ft"} and "- Precision: base: float32 weights" in report
