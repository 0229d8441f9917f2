"""Warm latency of `ask --rag` and `compare` (every arm): p50 over 10 questions, models loaded once.

One :class:`~ptwiki_llm.rag.answering.Answerer` (what `ask`, `compare` and the arena call) on the default
workdir loads the models, the retriever and the embedder once (timed: the cold start); then each of 10
questions is answered as `ask --rag` does (one arm, base+rag) and as `compare` does (every arm of
evaluation.arms). Questions: those `ptwiki-llm ask --examples` lists, then fixed ones the sample does not
cover. Goal: compare of four arms under 20 s warm on 2 CPU cores. Results:
benchmarks/results/answer_latency.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/answer_latency.py [--workdir .ptwiki]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import add_workdir_arguments, benchmark_machine, describe_machine, write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402

# off the sample's topics: "not found" answers are part of what a user meets
FIXED = ["Qual é a fórmula química da cafeína?", "Quem escreveu Os Lusíadas?", "Quantos habitantes tem Lisboa?",
         "Em que ano foi fundada a cidade de São Paulo?", "Quem foi Santos Dumont?", "O que é a fotossíntese?",
         "Qual é o maior rio do mundo?", "Quem pintou a Mona Lisa?", "Onde fica a Torre Eiffel?",
         "Qual é a capital da Austrália?"]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workdir_arguments(parser)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--shared-machine", action="store_true",
                        help="say in the result that other work ran on the machine during the measurement")
    args = parser.parse_args()

    from ptwiki_llm.rag.answering import Answerer
    from ptwiki_llm.rag.examples import example_questions

    overrides: dict = {"workdir": args.workdir}
    if args.arms:
        overrides["evaluation"] = {"arms": args.arms}
    config = load_config(REPO / "configs" / "local.yaml", overrides)
    started = time.perf_counter()
    answerer = Answerer(config)
    arms, _ = answerer.compare_arms()
    answerer.load(arms)
    cold_s = time.perf_counter() - started
    examples = example_questions(config, count=args.questions // 2, retriever=answerer.retriever())
    questions = ([e.question for e in examples] + FIXED)[: args.questions]
    ask_arm = answerer.arm("base", rag=True)
    rows = []
    for question in questions:
        t0 = time.perf_counter()
        asked = answerer.answer(question, [ask_arm])
        ask_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compared = answerer.answer(question, arms)
        compare_s = time.perf_counter() - t0
        rows.append({"question": question, "ask_s": round(ask_s, 2), "compare_s": round(compare_s, 2),
                     "not_found": compared.not_found,
                     "per_arm_s": {a.arm: round(a.seconds, 2) for a in compared.answers},
                     "ask_answer": asked.answers[0].text,
                     "answers": {a.arm: a.text for a in compared.answers}})
        print(rows[-1])
    answerer.close()
    ask = [r["ask_s"] for r in rows]
    compare = [r["compare_s"] for r in rows]
    machine = benchmark_machine("ptwiki-llm", "torch", "transformers", "lancedb")
    summary = {"ask_p50_s": statistics.median(ask), "ask_p90_s": _p(ask, 0.9),
               "compare_p50_s": statistics.median(compare), "compare_p90_s": _p(compare, 0.9),
               "cold_load_s": round(cold_s, 1), "arms": [a.name for a in arms], "questions": len(rows),
               "not_found": sum(r["not_found"] for r in rows)}
    out = {"benchmark": "answer_latency", "machine": machine, "workdir": args.workdir,
           "shared_machine": args.shared_machine, "summary": summary,
           "rows": rows}
    lines = [
        "# Warm latency of `ask --rag` and `compare`", "",
        f"{machine['date_utc']}; {describe_machine(machine)}."
        + (" **The machine was shared** with other work while this ran, so these are upper bounds for an idle "
           "machine of this kind." if args.shared_machine else " Nothing else ran on the machine."),
        "", *([args.note, ""] if args.note else []),
        f"One Answerer loads {', '.join(dict.fromkeys(a.model for a in arms))}, the retriever and the embedder "
        f"once: **{summary['cold_load_s']} s** (cold). Then {len(rows)} questions "
        f"({len(examples)} from `ask --examples`, the rest off the sample's topics; {summary['not_found']} of "
        "them answered \"not found in the sources\" by the RAG arms, which then skip generation):", "",
        "| what | p50 s | p90 s |", "| --- | ---: | ---: |",
        f"| `ask --rag` (base+rag) | {summary['ask_p50_s']:.1f} | {summary['ask_p90_s']:.1f} |",
        f"| `compare` ({len(arms)} arms: {', '.join(summary['arms'])}) | {summary['compare_p50_s']:.1f} | "
        f"{summary['compare_p90_s']:.1f} |", "",
        "Goal: compare of four arms under 20 s warm on 2 CPU cores. Per question and arm: answer_latency.json.",
    ]
    write_results("answer_latency", out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
