"""Embedding in float32 vs bf16 autocast (rag.embedding.bf16_autocast): speed, agreement, retrieval quality.

On the same passages of the ingested sample, in one process and alternating which side goes first:
passages per second of ``Embedder.embed_passages`` with autocast off and on, and the cosine between
each passage's two vectors. Then FaQuAD dev and train are indexed and asked once per precision
(vector, and hybrid at the default alpha): recall@k and MRR@10 of the passage holding the answer.
bf16 pays off only where the hardware multiplies bf16 (AVX512-BF16/AMX CPUs, CUDA); the result file
says whether this CPU does. Results: benchmarks/results/embedding_precision.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/embedding_precision.py --articles-dir DIR
       [--articles 150] [--repeats 2]   (DIR: article shards, e.g. .ptwiki/data/articles/<hash>)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, describe_machine, find_asset, write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "embedding_precision"
QA_FILES = ("data/faquad_dev.json.gz", "data/faquad_train.json.gz")
SETTINGS = ("off", "on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles-dir", type=Path, required=True)
    parser.add_argument("--articles", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from ptwiki_llm.data.ingest import shard_paths
    from ptwiki_llm.models import load_tokenizer, model_ref
    from ptwiki_llm.rag.chunking import Chunker, ChunkStats, unique_chunks
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.index import iter_articles
    from ptwiki_llm.rag.retrieval_eval import evaluate_retrieval
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, open_store

    shutil.rmtree(WORK, ignore_errors=True)
    configs = {s: load_config(REPO / "configs" / "local.yaml",
                              {"workdir": str(WORK / s), "rag": {"embedding": {"bf16_autocast": s}}}) for s in SETTINGS}
    embedders = {s: load_embedder(c) for s, c in configs.items()}
    rag = configs["off"].rag
    chunker = Chunker(load_tokenizer(model_ref(configs["off"], rag.embedding.model), configs["off"]), rag.chunking)
    rows = list(iter_articles(shard_paths(args.articles_dir), limit=args.articles))
    texts = [c.embedding_text(rag.chunking.heading_in_embedding)
             for _, cs in unique_chunks(rows, chunker, ChunkStats()) for c in cs]
    for embedder in embedders.values():
        embedder.embed_passages(texts[:64])  # warm-up: first-call allocations are in no measurement

    seconds: dict[str, list[float]] = {s: [] for s in SETTINGS}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        for s in SETTINGS if repeat % 2 == 0 else reversed(SETTINGS):
            started = time.perf_counter()
            vectors[s] = embedders[s].embed_passages(texts)
            seconds[s].append(time.perf_counter() - started)
        print(f"repeat {repeat}: " + ", ".join(f"{s} {seconds[s][-1]:.1f}s" for s in SETTINGS))
    cosine = (vectors["off"] * vectors["on"]).sum(axis=1)

    quality: dict[str, list[dict]] = {}
    for s, config in configs.items():
        quality[s] = []
        for name in QA_FILES:
            with open_store(config) as store:
                store.open(CollectionSpec(name=f"Eval_{Path(name).name.split('.')[0]}",
                                          dimension=embedders[s].dimension, embedder=embedders[s].name,
                                          chunking=chunking_fingerprint(config.rag.chunking)))
                quality[s].append(evaluate_retrieval(find_asset(name), store, chunker, embedders[s], config.rag,
                                                     modes=(("vector", None), ("hybrid", rag.retrieval.alpha))))

    rate = {s: len(texts) / statistics.median(seconds[s]) for s in SETTINGS}
    machine = benchmark_machine("ptwiki-llm", "sentence-transformers", "torch")
    out = {
        "benchmark": "embedding_precision",
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "device": embedders["off"].device,
        "embedder": embedders["off"].name,
        "articles": len(rows),
        "passages": len(texts),
        "batch_size": rag.embedding.batch_size,
        "seconds": seconds,
        "passages_per_s": rate,
        "speedup": rate["on"] / rate["off"],
        "cosine_float32_vs_bf16": {"min": float(cosine.min()), "p1": float(np.percentile(cosine, 1)),
                                   "mean": float(cosine.mean())},
        "retrieval": quality,
    }
    md = [
        "# Embedding precision: float32 vs bf16 autocast",
        "",
        f"{machine['date_utc']}; {describe_machine(machine)}; device "
        f"{out['device']}, torch threads {out['torch_threads']}; {out['embedder']}, batch {out['batch_size']}; "
        f"{len(rows)} articles -> {len(texts)} passages; median of {args.repeats} runs, alternating order.",
        "",
        "| precision | seconds (median) | passages/s |",
        "| --- | ---: | ---: |",
        *(f"| {'bf16 autocast' if s == 'on' else 'float32'} | {statistics.median(seconds[s]):.1f} | {rate[s]:.1f} |"
          for s in SETTINGS),
        "",
        f"**Speed-up: {out['speedup']:.2f}x.** Cosine between a passage's float32 and bf16 vectors: min "
        f"{cosine.min():.5f}, 1st percentile {np.percentile(cosine, 1):.5f}, mean {cosine.mean():.5f}.",
        "",
        "Retrieval of the passage holding the answer, each precision indexing and asking on its own:",
        "",
        "| file | mode | precision | recall@1 | recall@5 | recall@10 | MRR@10 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for i, name in enumerate(QA_FILES):
        for mode in quality["off"][i]["metrics"]:
            for s in SETTINGS:
                m = quality[s][i]["metrics"][mode]
                md.append(f"| {Path(name).name} | {mode} | {'bf16' if s == 'on' else 'float32'} | {m['recall@1']:.3f} "
                          f"| {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['mrr@10']:.3f} |")
    write_results("embedding_precision", out, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
