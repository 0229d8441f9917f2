"""Share of answers that loop or echo the question, before and after the stop rules, per arm.

On the evaluation's QA items (the seeded FaQuAD dev questions of `evaluation.qa`, RAG arms reading the
passages retrieved from FaQuAD's own index), every arm of the default workdir (base, base+rag, the
registered challenger ft, ft+rag) answers twice in each of two settings:

- evaluation: the evaluation's prompts (question + short-answer instruction, `evaluation.rag_k` passages)
  and token budget (`evaluation.max_new_tokens`), exactly as `run_qa` generates them;
- ask: the question alone, as `ptwiki-llm ask` and `compare` prompt (`rag.retrieval.k` passages), with the
  former default of 200 new tokens before, and the question budget (`rag.answer.question_max_new_tokens`)
  after.

"before" generates with no stop rule but EOS and the budget (what every path did before); "after" with
`rag.answer` stop rules (blank line, repetition). A generation loops when its text repeats a line,
sentence or 5-word run; it echoes when what is shown only restates the question
(ptwiki_llm/rag/generation.py). Results: benchmarks/results/loop_echo.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/loop_echo.py [--workdir .ptwiki]
(needs a workdir with a registered challenger: `ptwiki-llm run`)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import add_workdir_arguments, benchmark_machine, describe_machine, write_results  # noqa: E402
from ptwiki_llm.config import Config, load_config  # noqa: E402

FORMER_MAX_NEW_TOKENS = 200  # rag.answer.max_new_tokens, the only budget `ask` had before the stop rules


def _rates(generated: list[Any]) -> dict[str, float]:
    n = len(generated) or 1
    return {"loop": sum(g.loop for g in generated) / n, "echo": sum(g.echo for g in generated) / n,
            "loop_or_echo": sum(g.loop_or_echo for g in generated) / n,
            "no_answer": sum(not g.text for g in generated) / n,
            "mean_chars": sum(len(g.raw) for g in generated) / n}


def _prompts(config: Config, tokenizer: Any, model: Any, items: Any, arm: Any, setting: str) -> tuple[list, list]:
    """The prompts of one arm: the evaluation's own (``run_qa``'s), or the question alone as `ask` asks it."""
    from ptwiki_llm.evaluation.run import qa_prompts
    from ptwiki_llm.rag.answer import build_prompt, context_budget, render_prompt

    if setting == "evaluation":
        instruction = config.evaluation.qa.instruction
        prepared = qa_prompts(model, tokenizer, arm, items, config)
        return [prompt for _, prompt, _ in prepared], [f"{item.question}\n{instruction}".strip()
                                                       for item, _, _ in prepared]
    k, answer_cfg = config.rag.retrieval.k, config.rag.answer.model_copy(
        update={"max_new_tokens": FORMER_MAX_NEW_TOKENS})
    budget = context_budget(model, answer_cfg)
    prompts, questions = [], []
    for item in items.qa.items:
        hits = items.qa_retrieval.hits[item.qid][:k] if arm.rag else []
        prompt = (build_prompt(tokenizer, item.question, hits, budget, answer_cfg)[0] if arm.rag
                  else render_prompt(tokenizer, item.question, []))
        prompts.append(prompt)
        questions.append(item.question)
    return prompts, questions


def _formatted_dir(config: Config) -> Path:
    """The format step's folder the workdir's last evaluation read (newest summary.json under data/formatted)."""
    found = sorted((config.data_dir / "formatted").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no formatted data under {config.data_dir / 'formatted'}: run `ptwiki-llm run` first")
    return found[-1].parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workdir_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--name", default="loop_echo", help="results file name under benchmarks/results/")
    parser.add_argument("--settings", nargs="+", choices=("evaluation", "ask"), default=["evaluation", "ask"],
                        help="which prompts to measure (ask, with 200 new tokens before, is the slow one)")
    args = parser.parse_args()

    import torch

    from ptwiki_llm.data.format import FormattedData
    from ptwiki_llm.evaluation.arms import load_arm_model, plan_arms, registry_versions, release_memory
    from ptwiki_llm.evaluation.qa import load_knowledge_task
    from ptwiki_llm.evaluation.run import EvalItems, model_precision, retrieve
    from ptwiki_llm.rag.generation import StopRules, generate_answers

    overrides: dict = {"workdir": args.workdir}
    if args.arms:
        overrides["evaluation"] = {"arms": args.arms}
    config = load_config(REPO / "configs" / "local.yaml", overrides)
    ev, answer = config.evaluation, config.rag.answer
    versions = registry_versions(config, None)
    arms, notes = plan_arms(config, versions)
    formatted = FormattedData.from_folder(_formatted_dir(config))
    items = EvalItems(qa=load_knowledge_task(config, formatted))
    retrieve(config, items, None, show_progress=False)
    stops = tuple(answer.stop_strings)
    settings = {
        ("evaluation", "before"): StopRules(ev.max_new_tokens, (), False),
        ("evaluation", "after"): StopRules(ev.max_new_tokens, stops, answer.stop_on_repetition),
        ("ask", "before"): StopRules(FORMER_MAX_NEW_TOKENS, (), False),
        ("ask", "after"): StopRules(answer.question_max_new_tokens, stops, answer.stop_on_repetition),
    }
    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for model_name in dict.fromkeys(arm.model for arm in arms):
        model, tokenizer = load_arm_model(config, model_name, versions)
        precision = model_precision(model, ev.bf16_autocast)
        for arm in (a for a in arms if a.model == model_name):
            for (setting, when), rules in settings.items():
                if setting not in args.settings:
                    continue
                prompts, questions = _prompts(config, tokenizer, model, items, arm, setting)
                started = time.perf_counter()
                generated = []
                with torch.autocast(precision.device, dtype=torch.bfloat16, enabled=precision.autocast):
                    for start in range(0, len(prompts), args.batch_size):
                        generated += generate_answers(model, tokenizer, prompts[start : start + args.batch_size],
                                                      questions[start : start + args.batch_size], rules)
                key = f"{arm.name} | {setting} | {when}"
                results[key] = {"arm": arm.name, "setting": setting, "when": when, "items": len(generated),
                                "max_new_tokens": rules.max_new_tokens, **_rates(generated),
                                "seconds": round(time.perf_counter() - started, 1)}
                examples[key] = [{"question": q, "raw": g.raw, "shown": g.shown, "loop": g.loop, "echo": g.echo}
                                 for q, g in zip(questions[:5], generated[:5], strict=True)]
                print(key, {k: v for k, v in results[key].items() if k not in ("arm", "setting", "when")}, flush=True)
        del model, tokenizer
        release_memory()
    machine = benchmark_machine("ptwiki-llm", "torch", "transformers", "peft")
    out = {"benchmark": "loop_echo", "machine": machine, "workdir": args.workdir,
           "versions": {"challenger": versions.challenger, "champion": versions.champion}, "notes": notes,
           "qa_items": {items.qa.name: len(items.qa.items)}, "results": results, "examples": examples}
    counts = ", ".join(f"{name}: {count}" for name, count in out["qa_items"].items())
    lines = [
        "# Answers that loop or echo the question: before and after the stop rules", "",
        f"{machine['date_utc']}; {describe_machine(machine)}; times are not speed measurements (the machine may "
        f"have been shared). Default workdir (`ptwiki-llm run`, configs/local.yaml): ft = challenger "
        f"v{versions.challenger}. Items: the evaluation's QA items ({counts} "
        "questions), greedy decoding. loop = the generated text repeats a line, sentence or 5-word run; echo = "
        "what is shown only restates the question (shown as \"(no answer)\"); no answer = nothing left to show.",
        *(["", args.note] if args.note else []),
        "", "| arm | prompts | when | new tokens | loop | echo | **loop or echo** | no answer | mean chars |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results.values():
        lines.append(f"| {r['arm']} | {r['setting']} | {r['when']} | {r['max_new_tokens']} | {r['loop']:.0%} | "
                     f"{r['echo']:.0%} | **{r['loop_or_echo']:.0%}** | {r['no_answer']:.0%} | "
                     f"{r['mean_chars']:.0f} |")
    lines += ["", "evaluation = the evaluation's prompts (question + \"" + ev.qa.instruction + "\", "
              f"{ev.rag_k or config.rag.retrieval.k} passages, each arm in its prompt format) and budget; ask = "
              "the question alone as `ask`/`compare` prompt it "
              f"({config.rag.retrieval.k} passages), {FORMER_MAX_NEW_TOKENS} tokens before, "
              f"{answer.question_max_new_tokens} after. Measured here: {', '.join(args.settings)}. Per-arm examples "
              "(first 5 items): loop_echo.json."]
    write_results(args.name, out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
