"""Retrieval quality of the RAG index on SQuAD-format QA files (FaQuAD dev and train by default).

Each file's paragraphs are indexed with the configured chunker and embedder into a fresh LanceDB
collection; every question is asked in vector mode, in hybrid mode at several alphas and in pure
BM25 (hybrid, alpha=0). Metric: recall@1/5/10 and MRR@10 of the passage holding the answer
(see ptwiki_llm/rag/retrieval_eval.py). Results: benchmarks/results/retrieval_quality.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/retrieval_quality.py [--files data/x.json.gz ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import find_asset, write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402
from ptwiki_llm.provenance import machine_info, package_versions  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "retrieval_quality"
MODES = (("vector", None), ("hybrid", 0.25), ("hybrid", 0.5), ("hybrid", 0.75), ("hybrid", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", default=["data/faquad_dev.json.gz", "data/faquad_train.json.gz"])
    args = parser.parse_args()

    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.rag.chunking import Chunker
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.retrieval_eval import evaluate_retrieval
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, open_store

    shutil.rmtree(WORK, ignore_errors=True)
    config = load_config(REPO / "configs" / "local.yaml", {"workdir": str(WORK)})
    embedder = load_embedder(config)
    chunker = Chunker(load_tokenizer(model_ref(config, config.rag.embedding.model), config), config.rag.chunking)
    runs = []
    for name in args.files:
        path = find_asset(name)
        started = time.perf_counter()
        with open_store(config) as store:
            store.open(CollectionSpec(name=f"Eval_{Path(name).name.split('.')[0]}", dimension=embedder.dimension,
                                      embedder=embedder.name, chunking=chunking_fingerprint(config.rag.chunking)))
            result = evaluate_retrieval(path, store, chunker, embedder, config.rag, modes=MODES)
        result["seconds"] = round(time.perf_counter() - started, 1)
        runs.append(result)
        print(result)
    out = {
        "benchmark": "retrieval_quality",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "packages": package_versions(("ptwiki-llm", "sentence-transformers", "lancedb", "torch")),
        "embedder": embedder.name,
        "device": embedder.device,
        "chunking": config.rag.chunking.model_dump(),
        "backend": config.rag.store.backend,
        "runs": runs,
    }
    lines = [
        "# Retrieval quality (SQuAD-format QA, passage holding the answer)",
        "",
        f"{out['date']}; embedder {embedder.name} on {embedder.device}; LanceDB; chunking "
        f"{config.rag.chunking.max_tokens} tokens, overlap {config.rag.chunking.overlap_tokens}. "
        "hybrid = Weaviate-style relative-score fusion of BM25 and vector scores; alpha 1 = vector only, "
        "0 = BM25 only.",
        "",
    ]
    for run in runs:
        lines += [f"## {run['dataset']}: {run['paragraphs']} paragraphs -> {run['chunks_indexed']} passages, "
                  f"{run['questions']} questions", "",
                  "| mode | recall@1 | recall@5 | recall@10 | MRR@10 |", "| --- | --- | --- | --- | --- |"]
        for mode, m in run["metrics"].items():
            label = "BM25 only (hybrid, alpha=0.0)" if mode == "hybrid(alpha=0.0)" else mode
            lines.append(f"| {label} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} "
                         f"| {m['mrr@10']:.3f} |")
        lines.append("")
    write_results("retrieval_quality", out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
