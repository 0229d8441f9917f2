"""Embedding runtimes and precisions vs float32 torch: speed, agreement, retrieval quality, and the 'auto' rule.

Variants (rag.embedding.backend / quantization / bf16_autocast): torch float32 (the reference), torch bf16
autocast, ONNX Runtime float32 and ONNX Runtime int8 (feed-forward inputs smoothed, weights per channel,
activations dynamic: ptwiki_llm/rag/smoothquant.py; ONNX runs one text per session run), the ONNX ones exported
once into the benchmark's model store from the staged weights. On the same passages of the ingested sample, in one
process and rotating which variant goes first: passages per second of ``Embedder.embed_passages`` and the
cosine between each passage's vector and its float32 torch vector. Then FaQuAD dev and train are indexed and
asked once per variant (vector, and hybrid at the default alpha): recall@k and MRR@10 of the passage holding
the answer. The largest recall@5 loss over both files and both modes is what
ptwiki_llm/rag/embedding_backend.py's 'auto' rule reads (``auto_rule`` in the result). Speed is a ratio within
one run: on a shared machine the absolute numbers are inflated, the ratios much less.
Results: benchmarks/results/embedding_backends.{json,md} (embedding_precision.* holds the first, float32 vs bf16
run of 2026-11-26).

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/embedding_precision.py --articles-dir DIR
       [--articles 150] [--repeats 2] [--shared-machine]   (DIR: article shards, e.g. .ptwiki/data/articles/<hash>)
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
REFERENCE = "torch-float32"
VARIANTS = {  # name -> rag.embedding overrides
    REFERENCE: {"backend": "torch", "bf16_autocast": False},
    "torch-bf16-autocast": {"backend": "torch", "bf16_autocast": True},
    "onnx-float32": {"backend": "onnx", "quantization": "none"},
    "onnx-int8": {"backend": "onnx", "quantization": "int8"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles-dir", type=Path, required=True)
    parser.add_argument("--articles", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shared-machine", action="store_true",
                        help="say in the result that other work ran on the machine during the measurement")
    args = parser.parse_args()

    import torch

    from ptwiki_llm.data.ingest import iter_articles, shard_paths
    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.rag.chunking import Chunker, ChunkStats, unique_chunks
    from ptwiki_llm.rag.embedding_backend import MAX_RECALL5_LOSS
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.retrieval_eval import evaluate_retrieval
    from ptwiki_llm.rag.stores import CollectionSpec, chunking_fingerprint, open_store

    shutil.rmtree(WORK, ignore_errors=True)
    configs = {v: load_config(REPO / "configs" / "local.yaml",
                              {"workdir": str(WORK / v), "models": {"store": str(WORK / "model-store")},
                               "rag": {"embedding": overrides}}) for v, overrides in VARIANTS.items()}
    export_s: dict[str, float] = {}
    embedders = {}
    for v, config in configs.items():
        started = time.perf_counter()
        embedders[v] = load_embedder(config)
        export_s[v] = time.perf_counter() - started  # the first ONNX load includes its export (once per store)
    rag = configs[REFERENCE].rag
    chunker = Chunker(load_tokenizer(model_ref(configs[REFERENCE], rag.embedding.model), configs[REFERENCE]),
                      rag.chunking)
    rows = list(iter_articles(shard_paths(args.articles_dir), limit=args.articles))
    texts = [c.embedding_text(rag.chunking.heading_in_embedding)
             for _, cs in unique_chunks(rows, chunker, ChunkStats()) for c in cs]
    for embedder in embedders.values():
        embedder.embed_passages(texts[:64])  # warm-up: first-call allocations are in no measurement

    names = list(VARIANTS)
    seconds: dict[str, list[float]] = {v: [] for v in names}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for v in names[shift:] + names[:shift]:
            started = time.perf_counter()
            vectors[v] = embedders[v].embed_passages(texts)
            seconds[v].append(time.perf_counter() - started)
        print(f"repeat {repeat}: " + ", ".join(f"{v} {seconds[v][-1]:.1f}s" for v in names), flush=True)
    cosine = {v: (vectors[REFERENCE] * vectors[v]).sum(axis=1) for v in names}

    quality: dict[str, list[dict]] = {}
    for v, config in configs.items():
        quality[v] = []
        for name in QA_FILES:
            with open_store(config) as store:
                store.open(CollectionSpec(name=f"Eval_{Path(name).name.split('.')[0]}",
                                          dimension=embedders[v].dimension, embedder=embedders[v].name,
                                          chunking=chunking_fingerprint(config.rag.chunking)))
                quality[v].append(evaluate_retrieval(find_asset(name), store, chunker, embedders[v], config.rag,
                                                     modes=(("vector", None), ("hybrid", rag.retrieval.alpha))))
        print(f"quality {v}: " + ", ".join(f"{q['dataset']} {q['metrics']['vector']['recall@5']:.3f}"
                                           for q in quality[v]), flush=True)

    def recall5_loss(v: str, modes: tuple[str, ...] | None = None) -> float:
        """float32 torch's recall@5 minus this variant's, worst over both files and ``modes`` (default: all)."""
        return round(max(ref["metrics"][mode]["recall@5"] - mine["metrics"][mode]["recall@5"]
                         for ref, mine in zip(quality[REFERENCE], quality[v], strict=True)
                         for mode in (modes or tuple(ref["metrics"]))), 4)

    rate = {v: len(texts) / statistics.median(seconds[v]) for v in names}
    machine = benchmark_machine("ptwiki-llm", "sentence-transformers", "torch", "onnxruntime", "onnx")
    out = {
        "benchmark": "embedding_backends",
        "machine": machine,
        "shared_machine": args.shared_machine,
        "torch_threads": torch.get_num_threads(),
        "device": embedders[REFERENCE].device,
        "embedder": embedders[REFERENCE].name,
        "articles": len(rows),
        "passages": len(texts),
        "batch_size": rag.embedding.batch_size,
        "variants": {v: {**embedders[v].identity, "precision": embedders[v].precision} for v in names},
        "first_load_s": export_s,
        "seconds": seconds,
        "passages_per_s": rate,
        "speedup_vs_float32_torch": {v: rate[v] / rate[REFERENCE] for v in names},
        "cosine_to_float32_torch": {v: {"min": float(c.min()), "p1": float(np.percentile(c, 1)),
                                        "mean": float(c.mean())} for v, c in cosine.items()},
        "retrieval": quality,
        "auto_rule": {"max_recall5_loss": MAX_RECALL5_LOSS,
                      "mode": "worst of vector and hybrid (hybrid is the default retrieval mode)", "candidates": [
            {"backend": VARIANTS[v]["backend"], "quantization": VARIANTS[v]["quantization"],
             "recall5_loss": recall5_loss(v),
             **{f"recall5_loss_{mode.split('(')[0]}": recall5_loss(v, (mode,)) for mode in quality[v][0]["metrics"]},
             "speedup_vs_float32_torch": rate[v] / rate[REFERENCE]}
            for v in names if VARIANTS[v]["backend"] == "onnx"]},
    }
    shared = (" **Measured while other work shared the machine**: absolute seconds are inflated; the speed-ups "
              "compare variants within this one run, alternating." if args.shared_machine else "")
    md = [
        "# Embedding runtimes: torch float32 / bf16 autocast, ONNX Runtime float32 / int8",
        "",
        f"{machine['date_utc']}; {describe_machine(machine)}; device {out['device']}, torch threads "
        f"{out['torch_threads']}; {out['embedder']}, torch batch "
        f"{out['batch_size']}, ONNX one text per session run; {len(rows)} articles -> {len(texts)} passages; "
        f"median of {args.repeats} runs, "
        f"rotating the order.{shared}",
        "",
        "| variant | seconds (median) | passages/s | speed-up vs float32 torch | cosine to float32 torch: min / mean |",
        "| --- | ---: | ---: | ---: | --- |",
        *(f"| {v} | {statistics.median(seconds[v]):.1f} | {rate[v]:.1f} | "
          f"{out['speedup_vs_float32_torch'][v]:.2f}x | {cosine[v].min():.5f} / {cosine[v].mean():.5f} |"
          for v in names),
        "",
        "Retrieval of the passage holding the answer, each variant indexing and asking on its own:",
        "",
        "| file | mode | variant | recall@1 | recall@5 | recall@10 | MRR@10 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for i, name in enumerate(QA_FILES):
        for mode in quality[REFERENCE][i]["metrics"]:
            for v in names:
                m = quality[v][i]["metrics"][mode]
                md.append(f"| {Path(name).name} | {mode} | {v} | {m['recall@1']:.3f} | {m['recall@5']:.3f} "
                          f"| {m['recall@10']:.3f} | {m['mrr@10']:.3f} |")
    md += ["", f"'auto' (rag.embedding.backend) admits a runtime whose recall@5 loss against float32 torch, "
           f"worst of the two files and the two modes, is at most {MAX_RECALL5_LOSS}: "
           + "; ".join(f"{c['backend']} {c['quantization']}: {c['recall5_loss']:+.4f}"
                       for c in out["auto_rule"]["candidates"]) + "."]
    write_results("embedding_backends", out, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
