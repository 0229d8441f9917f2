"""The evaluation end to end: items, retrieval, every arm on every task, statistics, gate decision, report.

Items are fixed before any model is loaded (probes from the articles, a seeded sample of QA questions
and of held-out texts), and retrieval runs once per item, so the two RAG arms read the same passages.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.config import Config
from ptwiki_llm.evaluation.arms import (
    Arm,
    EvaluationSetupError,
    Versions,
    arm_of,
    load_arm_model,
    plan_arms,
    release_memory,
)
from ptwiki_llm.evaluation.bootstrap import Interval
from ptwiki_llm.evaluation.exposure import fine_tuning_exposure
from ptwiki_llm.evaluation.gate import Decision, decide
from ptwiki_llm.evaluation.metrics import answer_in_texts, exact_match, sentence_in_texts, token_f1
from ptwiki_llm.evaluation.probes import Probe, build_probes, fine_tuning_sentences, write_probes
from ptwiki_llm.evaluation.prompts import arm_format, arm_prompt
from ptwiki_llm.evaluation.qa import QaRetrieval, QaTask, load_knowledge_task, retrieve_for_task
from ptwiki_llm.evaluation.scoring import choice_scores, cloze_scores, read_prompt, text_nll
from ptwiki_llm.evaluation.summary import summarize
from ptwiki_llm.progress import progress_bar
from ptwiki_llm.rag.generation import Generated, StopRules, generate_answers

if TYPE_CHECKING:
    from ptwiki_llm.data.format import FormattedData

NOTES = (
    "Language-model scores (lm) are on raw text of held-out articles (the eval split, no template); lm_format scores "
    "the templated eval examples and measures the prompt format as much as knowledge.",
    "Probes: RAG arms retrieve with a question built from the probe (interrogative, the article's title, a few words "
    "around the masked span), never with the sentence; every arm answers that question as multiple choice "
    "(probes.accuracy); arms without RAG also score the masked sentence itself (probes.cloze_accuracy). "
    "probes.source_in_sources is the share of RAG probes whose retrieved passages hold the probe's source sentence.",
    "Knowledge-injection QA: questions about documents of which one half (seen) was in the fine-tuning texts and the "
    "other (heldout) was not; both halves are in the RAG index. Arms without RAG answer closed-book.",
)


class EvaluationReport(StepArtifact):
    """The evaluate step's output: where the report is, every arm's metrics with intervals, the gate's decision."""

    dir: str
    report: str
    report_html: str
    examples: str
    arms: list[str]
    metrics: dict[str, dict[str, Interval]]
    """By arm, then metric: the value and its paired bootstrap interval."""
    differences: dict[str, dict[str, Interval]]
    """By pair ("ft - base"), then metric."""
    items: dict[str, int]
    gate: Decision
    versions: Versions
    timings: dict[str, float]
    mlflow_run_id: str


@dataclass
class EvalItems:
    probes: list[Probe] = field(default_factory=list)
    probe_counts: dict[str, int] = field(default_factory=dict)
    lm_texts: list[str] = field(default_factory=list)
    lm_format_texts: list[str] = field(default_factory=list)
    qa: QaTask | None = None
    probe_hits: dict[str, list[Any]] = field(default_factory=dict)
    qa_retrieval: QaRetrieval | None = None
    exposure: dict[str, Any] = field(default_factory=dict)


def seed_of(config: Config, specific: int | None) -> int:
    return config.seed if specific is None else specific


def prepare_items(config: Config, articles: Iterable[dict[str, Any]] | None, formatted: FormattedData) -> EvalItems:
    """Probes, held-out texts and QA questions: the same for every arm."""
    from ptwiki_llm.training.data import load_splits, raw_heldout_texts, read_texts, seeded_sample

    ev = config.evaluation
    items = EvalItems()
    # the exact sample the train step drew (same split, limits and seed, plus the knowledge documents)
    train_texts, _ = load_splits(formatted, config.train.max_train_examples, config.train.max_eval_examples,
                                 config.seed)
    if any(arm_of(name).model != "base" for name in ev.arms) and {"probes", "qa"} & set(ev.tasks):
        items.exposure = fine_tuning_exposure(config, train_texts, config.data.knowledge.repeats)
    if "probes" in ev.tasks and ev.probes.count and articles is not None:
        items.probes, items.probe_counts = build_probes(
            articles, ev.probes, seed_of(config, ev.probes.seed), config.data.format.eval_fraction,
            fine_tuning_sentences(train_texts))
        if not items.probes:
            raise EvaluationSetupError(
                f"no knowledge probe could be built from {items.probe_counts.get('articles', 0)} articles "
                f"({items.probe_counts}); use a larger corpus (data.max_articles, data.source), lower "
                "evaluation.probes.min_sentence_chars or evaluation.probes.distractors, or leave 'probes' out of "
                "evaluation.tasks")
    if "lm" in ev.tasks:
        items.lm_texts = raw_heldout_texts(formatted, ev.lm.max_texts, ev.lm.max_chars, config.seed)
        if not items.lm_texts:
            raise EvaluationSetupError("the eval split holds no article to score (lm): raise data.format.eval_fraction "
                                       "or use a larger corpus, or leave 'lm' out of evaluation.tasks")
    if "lm_format" in ev.tasks:
        items.lm_format_texts = seeded_sample(read_texts(Path(formatted.eval)), ev.lm.format_texts, config.seed)
    if "qa" in ev.tasks:
        items.qa = load_knowledge_task(config, formatted)
    return items


def retrieve(config: Config, items: EvalItems, collection: str | None, show_progress: bool) -> None:
    """Passages for every probe (Wikipedia index, by its question) and QA question (knowledge index), once."""
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.retrieval import open_retriever

    ev = config.evaluation
    k = ev.rag_k or config.rag.retrieval.k
    embedder = load_embedder(config)
    if items.probes:
        if collection is None:
            raise EvaluationSetupError("the probes of RAG arms need the Wikipedia index: run `ptwiki-llm index` first")
        retriever = open_retriever(config, collection, embedder)
        try:
            with progress_bar("retrieving for probes", len(items.probes), show_progress) as advance:
                for probe in items.probes:
                    items.probe_hits[probe.probe_id] = retriever.retrieve(probe.question, k=k)
                    advance(1)
        finally:
            retriever.close()
    if items.qa is not None:
        items.qa_retrieval = retrieve_for_task(config, items.qa, embedder, k, list(ev.qa.recall_k), show_progress)


def _sources_context(hits: list[Any]) -> str:
    blocks = [f"{h.chunk.title} — {h.chunk.section}\n{h.chunk.text}" if h.chunk.section
              else f"{h.chunk.title}\n{h.chunk.text}" for h in hits]
    return "\n\n".join(blocks) + "\n\n" if blocks else ""


def _sources(hits: list[Any]) -> list[dict[str, Any]]:
    return [{"title": h.chunk.title, "section": h.chunk.section, "url": h.chunk.url, "article_id": h.chunk.article_id,
             "score": round(float(h.score), 4), "text": h.chunk.text[:400]} for h in hits]


def _context_limit(model: Any, config: Config) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    if config.rag.answer.max_context_tokens:
        limit = min(limit, config.rag.answer.max_context_tokens)
    return limit - 64  # room for the span and the rest of the sentence


def _answer_config(model: Any, config: Config) -> tuple[Any, int]:
    from ptwiki_llm.rag.answer import context_budget

    answer_cfg = config.rag.answer.model_copy(update={"max_new_tokens": config.evaluation.max_new_tokens})
    return answer_cfg, context_budget(model, answer_cfg)


def _best(scores: list[float]) -> int:
    return scores.index(max(scores))


def choice_ranking(scores: list[Any], candidates: tuple[str, ...]) -> list[float]:
    """Log-likelihood per UTF-8 byte of each candidate (lm-evaluation-harness's acc_norm): longer answers are not
    penalised for their length."""
    return [s.span_logprob / max(1, len(c.encode("utf-8"))) for s, c in zip(scores, candidates, strict=True)]


def run_lm(model: Any, tokenizer: Any, arm: Arm, texts: list[str], config: Config, task: str,
           show_progress: bool) -> list[dict[str, Any]]:
    rows = []
    with progress_bar(f"{arm.name}: {task}", len(texts), show_progress) as advance:
        for index, text in enumerate(texts):
            rows.append({"item_id": f"t{index:05d}", "arm": arm.name,
                         **text_nll(model, tokenizer, text, config.evaluation.lm.max_length)})
            advance(1)
    return rows


def run_probes(model: Any, tokenizer: Any, arm: Arm, items: EvalItems, config: Config,
               show_progress: bool) -> list[dict[str, Any]]:
    rows = []
    limit = _context_limit(model, config)
    answer_cfg, budget = _answer_config(model, config)
    fmt = arm_format(config, arm)
    with progress_bar(f"{arm.name}: probes", len(items.probes), show_progress) as advance:
        for probe in items.probes:
            hits = items.probe_hits.get(probe.probe_id, []) if arm.rag else []
            question = f"{probe.question}\n{config.evaluation.qa.instruction}".strip()
            prompt, used = arm_prompt(fmt, tokenizer, question, hits, budget, answer_cfg)
            ranking = choice_ranking(choice_scores(model, tokenizer, prompt, probe.candidates), probe.candidates)
            row: dict[str, Any] = {
                "item_id": probe.probe_id, "arm": arm.name, "article_id": probe.article_id, "group": probe.group,
                "kind": probe.kind, "question": probe.question, "masked": probe.masked, "gold": probe.gold,
                "candidates": list(probe.candidates), "prompt_format": fmt,
                "scores": [round(t, 4) for t in ranking], "chosen": probe.candidates[_best(ranking)],
                "correct": float(ranking[0] > max(ranking[1:])),
            }
            if not arm.rag:  # the masked sentence itself: closed-book knowledge, no question format involved
                cloze = cloze_scores(model, tokenizer, "", probe.prefix, probe.candidates, probe.suffix, limit)
                totals = [s.total_logprob for s in cloze]
                row.update({"cloze_chosen": probe.candidates[_best(totals)],
                            "cloze_correct": float(totals[0] > max(totals[1:])), "gold_logprob": cloze[0].span_logprob})
            else:
                texts = [h.chunk.text for h in used]
                row["answer_in_sources"] = answer_in_texts([probe.gold], texts)
                row["source_in_sources"] = sentence_in_texts(probe.sentence, texts)
                row["same_article_retrieved"] = float(any(h.chunk.article_id == probe.article_id for h in used))
                row["sources"] = _sources(used)
            rows.append(row)
            advance(1)
    return rows


def qa_prompts(model: Any, tokenizer: Any, arm: Arm, items: EvalItems, config: Config) -> list[tuple[Any, str, list]]:
    """(item, prompt, passages that fit) per QA question: the question with the short-answer instruction, in the
    arm's prompt format, RAG arms with their retrieved passages."""
    ev = config.evaluation
    task = items.qa
    assert task is not None
    k = ev.rag_k or config.rag.retrieval.k
    answer_cfg, budget = _answer_config(model, config)
    fmt = arm_format(config, arm)
    retrieval = items.qa_retrieval
    prepared = []
    for item in task.items:
        question = f"{item.question}\n{ev.qa.instruction}".strip()
        hits = retrieval.hits[item.qid][:k] if arm.rag and retrieval is not None else []
        prompt, used = arm_prompt(fmt, tokenizer, question, hits, budget, answer_cfg)
        prepared.append((item, prompt, used))
    return prepared


def run_qa(model: Any, tokenizer: Any, arm: Arm, items: EvalItems, config: Config,
           show_progress: bool) -> list[dict[str, Any]]:
    ev = config.evaluation
    task = items.qa
    assert task is not None
    retrieval = items.qa_retrieval
    fmt = arm_format(config, arm)
    prepared = qa_prompts(model, tokenizer, arm, items, config)
    choices: dict[str, list[float]] = {}
    answers: dict[int, Generated] = {}
    # similar lengths together: less padding in generation; the answers go back to item order
    order = sorted(range(len(prepared)), key=lambda i: (len(prepared[i][1]), i))
    rules = StopRules(ev.max_new_tokens, tuple(config.rag.answer.stop_strings), config.rag.answer.stop_on_repetition)
    with progress_bar(f"{arm.name}: QA", len(prepared), show_progress) as advance:
        for batch_number, start in enumerate(range(0, len(order), ev.batch_size)):
            batch = order[start : start + ev.batch_size]
            reads = []
            for i in batch:  # each prompt is read once: its choices are scored, then its answer generated, from there
                item, prompt, _ = prepared[i]
                reads.append(read_prompt(model, tokenizer, prompt))
                candidates = task.choices[item.qid]
                choices[item.qid] = choice_ranking(choice_scores(model, tokenizer, reads[-1], candidates), candidates)
            if ev.qa.generate:
                texts = generate_answers(model, tokenizer, [prepared[i][1] for i in batch],
                                         [f"{prepared[i][0].question}\n{ev.qa.instruction}" for i in batch], rules,
                                         sample=ev.decoding == "sample", temperature=ev.temperature, top_p=ev.top_p,
                                         seed=config.seed + batch_number, reads=reads)
                answers.update(zip(batch, texts, strict=True))
            advance(len(batch))
    rows = []
    for index, (item, _, used) in enumerate(prepared):
        ranking = choices[item.qid]
        candidates = task.choices[item.qid]
        row: dict[str, Any] = {
            "item_id": f"{task.name}:{item.qid}", "arm": arm.name, "file": task.name, "half": task.halves[item.qid],
            "question": item.question, "golds": list(item.answers), "choices": list(candidates), "prompt_format": fmt,
            "mc_chosen": candidates[_best(ranking)], "mc_correct": float(ranking[0] > max(ranking[1:])),
        }
        if ev.qa.generate:
            generated = answers[index]
            answer = generated.text  # "" when the answer only restated the question
            row.update({"answer": answer, "exact_match": exact_match(answer, item.answers),
                        "f1": token_f1(answer, item.answers), "raw_answer": generated.raw,
                        "loop_or_echo": float(generated.loop_or_echo), "loop": float(generated.loop),
                        "echo": float(generated.echo)})
        if arm.rag and retrieval is not None:
            row["answer_in_sources"] = answer_in_texts(item.answers, [h.chunk.text for h in used])
            row["gold_rank"] = retrieval.ranks[item.qid]
            row["sources"] = _sources(used)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Precision:
    device: str
    dtype: str
    autocast: bool

    @property
    def label(self) -> str:
        return f"{self.dtype} weights, bf16 autocast" if self.autocast else f"{self.dtype} weights"


def model_precision(model: Any, setting: bool | str) -> Precision:
    """How an arm's model computes: its weights' dtype, and bf16 autocast over float32 weights per ``setting``."""
    from ptwiki_llm.models.runtime import bf16_autocast

    weight = next(model.parameters())
    dtype = str(weight.dtype).removeprefix("torch.")
    return Precision(weight.device.type, dtype, dtype == "float32" and bf16_autocast(setting, weight.device.type))


def _run_arm(model: Any, tokenizer: Any, arm: Arm, items: EvalItems, config: Config,
             rows: dict[str, dict[str, list[dict[str, Any]]]], show_progress: bool) -> None:
    """Every task of one arm; its rows go into ``rows[task][arm]``."""
    if items.lm_texts and not arm.rag:
        rows.setdefault("lm", {})[arm.name] = run_lm(model, tokenizer, arm, items.lm_texts, config, "lm",
                                                     show_progress)
    if items.lm_format_texts and not arm.rag:
        rows.setdefault("lm_format", {})[arm.name] = run_lm(model, tokenizer, arm, items.lm_format_texts, config,
                                                            "lm_format", show_progress)
    if items.probes:
        rows.setdefault("probes", {})[arm.name] = run_probes(model, tokenizer, arm, items, config, show_progress)
    if items.qa is not None:
        rows.setdefault("qa", {})[arm.name] = run_qa(model, tokenizer, arm, items, config, show_progress)


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in sorted(rows, key=lambda r: (r["arm"], r["item_id"])):
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def run_evaluation(config: Config, *, articles: Iterable[dict[str, Any]] | None, formatted: FormattedData,
                   versions: Versions, collection: str | None, out_dir: Path, show_progress: bool = True,
                   apply_gate: Callable[[Decision], Decision] | None = None) -> dict[str, Any]:
    """Evaluate every runnable arm; writes per-item rows, summary.json and the report into ``out_dir``.

    ``apply_gate`` acts on the gate's decision (tags, promotion) before the report is written, so the
    report says what was done.
    """
    from ptwiki_llm.evaluation.report import write_report

    started = time.perf_counter()
    ev = config.evaluation
    arms, notes = plan_arms(config, versions)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    items = prepare_items(config, articles, formatted)
    if items.probes:
        write_probes(items.probes, staging / "probes.jsonl")
    timings["items_s"] = time.perf_counter() - t0
    if any(arm.rag for arm in arms):
        t0 = time.perf_counter()
        retrieve(config, items, collection, show_progress)
        timings["retrieval_s"] = time.perf_counter() - t0
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    precisions: dict[str, str] = {}
    import torch

    for model_name in dict.fromkeys(arm.model for arm in arms):
        t0 = time.perf_counter()
        model, tokenizer = load_arm_model(config, model_name, versions)
        timings[f"load.{model_name}_s"] = time.perf_counter() - t0
        precision = model_precision(model, ev.bf16_autocast)
        precisions[model_name] = precision.label
        for arm in (a for a in arms if a.model == model_name):
            torch.manual_seed(config.seed)
            t0 = time.perf_counter()
            with torch.autocast(precision.device, dtype=torch.bfloat16, enabled=precision.autocast):
                _run_arm(model, tokenizer, arm, items, config, rows, show_progress)
            timings[f"arm.{arm.name}_s"] = time.perf_counter() - t0
        del model, tokenizer
        release_memory()
    for task, by_arm in rows.items():
        _write_jsonl([row for arm_rows in by_arm.values() for row in arm_rows], staging / "items" / f"{task}.jsonl")
    summary = summarize(rows, ev.bootstrap, seed_of(config, ev.bootstrap.seed), ev.qa.recall_k)
    if not summary["items"]:
        raise EvaluationSetupError("no task produced an item for any arm: check evaluation.tasks and evaluation.arms")
    baseline_arm = "champion" if any(a.name == "champion" for a in arms) else "base"
    decision: Decision = decide(summary["metrics"], summary["differences"].get(f"ft - {baseline_arm}", {}), ev.gate,
                                versions.challenger, versions.champion, baseline_arm)
    if apply_gate is not None:
        decision = apply_gate(decision)
    timings["total_s"] = time.perf_counter() - started
    result: dict[str, Any] = {
        "arms": [a.name for a in arms],
        "notes": [*notes, *NOTES],
        "prompt_formats": {arm.name: arm_format(config, arm) for arm in arms},
        "versions": {"challenger": versions.challenger, "champion": versions.champion},
        "collection": collection,
        "precision": precisions,
        "counts": {"probes": items.probe_counts, "lm_texts": len(items.lm_texts),
                   "lm_format_texts": len(items.lm_format_texts),
                   "qa": {items.qa.name: items.qa.counts} if items.qa else {},
                   "qa_gold_passage_fallbacks": items.qa_retrieval.fallbacks if items.qa_retrieval else None,
                   "qa_collection": items.qa_retrieval.collection if items.qa_retrieval else None},
        "retrieval_modes": items.qa_retrieval.modes if items.qa_retrieval else {},
        "fine_tuning_exposure": items.exposure,
        "retrieval": {"mode": config.rag.retrieval.mode, "alpha": config.rag.retrieval.alpha,
                      "k": ev.rag_k or config.rag.retrieval.k},
        **summary,
        "gate": decision.to_dict(),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    (staging / "summary.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written = write_report(staging, result, rows, ev.examples_in_report)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return {**result, "plots": written["plots"], "rows": rows}
