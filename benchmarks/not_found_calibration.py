"""Calibrate rag.answer.not_found_below ("not found in the sources") on FaQuAD dev; check it on FaQuAD train.

For each file, its paragraphs are chunked and embedded as the index would (exact vector search in
memory), and each question is scored with its own document indexed (found) and left out (absent):
the best question-passage relevance among the k retrieved passages (ptwiki_llm/rag/calibration.py).
The threshold keeps at least --keep of FaQuAD dev's answerable questions; the train split, not used to
choose it, shows how it carries over. Results: benchmarks/results/not_found_calibration.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/not_found_calibration.py
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, find_asset, write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "not_found_calibration"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate-on", default="data/faquad_dev.json.gz")
    parser.add_argument("--check-on", nargs="*", default=["data/faquad_train.json.gz"])
    parser.add_argument("--keep", type=float, default=0.95, help="share of answerable questions kept")
    args = parser.parse_args()

    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.rag.calibration import rates, relevance_samples, threshold_for
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.embeddings import load_embedder

    shutil.rmtree(WORK, ignore_errors=True)
    config = load_config(REPO / "configs" / "local.yaml", {"workdir": str(WORK)})
    k = config.rag.retrieval.k
    embedder = load_embedder(config)
    chunker = Chunker(load_tokenizer(model_ref(config, config.rag.embedding.model), config), config.rag.chunking)
    samples = {}
    for name in [args.calibrate_on, *args.check_on]:
        started = time.perf_counter()
        samples[name] = relevance_samples(find_asset(name), chunker, embedder, config.rag, k)
        print(name, f"{time.perf_counter() - started:.0f} s", len(samples[name].found), len(samples[name].absent),
              flush=True)
    # rounded down, so that the config's 3 decimals still keep at least --keep of the found questions
    threshold = math.floor(threshold_for(samples[args.calibrate_on].found, args.keep) * 1000) / 1000
    runs = {}
    for name, s in samples.items():
        runs[name] = {"questions": s.questions, "passages": s.passages, "documents": s.documents,
                      "found_questions": len(s.found), "absent_questions": len(s.absent),
                      "found_relevance_median": float(sorted(s.found)[len(s.found) // 2]) if s.found else None,
                      "absent_relevance_median": float(sorted(s.absent)[len(s.absent) // 2]) if s.absent else None,
                      **rates(s, threshold), "role": "calibration" if name == args.calibrate_on else "check"}
    machine = benchmark_machine("ptwiki-llm", "sentence-transformers", "lancedb", "torch")
    result = {"benchmark": "not_found_calibration", "machine": machine, "embedder": embedder.name, "k": k,
              "keep": args.keep, "threshold": threshold, "runs": runs}
    lines = [
        "# Calibration of \"not found in the sources\" (rag.answer.not_found_below)", "",
        f"{machine['date_utc']}; embedder {embedder.name}; k = {k} passages (rag.retrieval.k), vector retrieval; "
        "score = the best question-passage cosine among the k retrieved (ptwiki_llm/rag/evidence.py). "
        "found: the question's document indexed and its answer passage among the k; absent: the question's "
        f"document left out of the index. Threshold = the value that keeps {args.keep:.0%} of the calibration "
        f"file's found questions: **{threshold}**.", "",
        "| file | role | questions | passages | found (kept) | absent (turned away) | median found | "
        "median absent |", "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in runs.items():
        lines.append(f"| {Path(name).name} | {r['role']} | {r['questions']} | {r['passages']} | "
                     f"{r['found_questions']} ({r['found_kept']:.1%}) | {r['absent_questions']} "
                     f"({r['absent_turned_away']:.1%}) | {r['found_relevance_median']:.3f} | "
                     f"{r['absent_relevance_median']:.3f} |")
    write_results("not_found_calibration", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
