"""Index throughput of the whole index step vs plain SentenceTransformer.encode on the same chunks.

Takes the first N articles of an ingested corpus, chunks them once (the passages both sides embed),
then, in the same process and alternating: (a) ``SentenceTransformer.encode`` of all passages in one
call (same prompt, batch size and normalization), (b) ``build_index`` into a fresh LanceDB collection
(chunking, existence checks, embedding in groups, writes, index build). Goal: (b) at >= 0.9 of (a)'s
passages per second. Results: benchmarks/results/index_throughput.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/index_throughput.py --articles-dir DIR [--articles 250]
(DIR: the article shards `ptwiki-llm data` printed, e.g. .ptwiki/data/articles/<hash>)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402
from ptwiki_llm.provenance import machine_info, package_versions  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "index_throughput"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles-dir", type=Path, required=True)
    parser.add_argument("--articles", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from ptwiki_llm.data.ingest import iter_articles, shard_paths
    from ptwiki_llm.models.refs import load_tokenizer, model_ref
    from ptwiki_llm.rag.chunking import Chunker, ChunkStats, unique_chunks
    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.index import build_index
    from ptwiki_llm.rag.stores import CollectionSpec, open_store

    shutil.rmtree(WORK, ignore_errors=True)
    config = load_config(REPO / "configs" / "local.yaml", {"workdir": str(WORK)})
    rag = config.rag
    rows = list(iter_articles(shard_paths(args.articles_dir), limit=args.articles))
    embedder = load_embedder(config)
    chunker = Chunker(load_tokenizer(model_ref(config, rag.embedding.model), config), rag.chunking)
    chunks = [c for _, cs in unique_chunks(rows, chunker, ChunkStats()) for c in cs]
    texts = [c.embedding_text(rag.chunking.heading_in_embedding) for c in chunks]
    tokens = sum(len(ids) for ids in chunker.tokenizer(texts, add_special_tokens=False)["input_ids"])
    embedder.embed_passages(texts[:64])  # warm-up: first-call allocations are in neither measurement

    plain_s, index_s, reports = [], [], []
    def plain() -> None:
        started = time.perf_counter()
        # under the same autocast as the index step's Embedder (rag.embedding.bf16_autocast)
        with torch.autocast(embedder.device, dtype=torch.bfloat16, enabled=embedder.bf16_autocast):
            embedder.model.encode(texts, prompt_name=rag.embedding.passage_prompt, batch_size=rag.embedding.batch_size,
                                  normalize_embeddings=rag.embedding.normalize, convert_to_numpy=True,
                                  show_progress_bar=False)
        plain_s.append(time.perf_counter() - started)

    def index_step(repeat: int) -> None:
        with open_store(config) as store:
            store.open(CollectionSpec(f"Bench_{repeat}", embedder.dimension, embedder.name))
            started = time.perf_counter()
            report = build_index(rows, chunker, embedder, store, rag, show_progress=False)
            index_s.append(time.perf_counter() - started)
        assert report.embedded == len(chunks), (report.embedded, len(chunks))
        reports.append(report.to_dict())

    for repeat in range(args.repeats):
        # alternate which side goes first, so drifting load on a shared machine hits both alike
        if repeat % 2 == 0:
            plain()
            index_step(repeat)
        else:
            index_step(repeat)
            plain()
        print(f"repeat {repeat}: plain {plain_s[-1]:.1f}s, index step {index_s[-1]:.1f}s")

    plain_rate = len(chunks) / statistics.median(plain_s)
    index_rate = len(chunks) / statistics.median(index_s)
    out = {
        "benchmark": "index_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "packages": package_versions(("ptwiki-llm", "sentence-transformers", "lancedb", "torch")),
        "torch_threads": torch.get_num_threads(),
        "device": embedder.device,
        "precision": embedder.precision,
        "embedder": embedder.name,
        "articles": len(rows),
        "passages": len(chunks),
        "passage_tokens": tokens,
        "settings": {"batch_size": rag.embedding.batch_size, "group_size": rag.embedding.group_size,
                     "chunking": rag.chunking.model_dump(), "backend": rag.store.backend},
        "plain_encode_s": plain_s,
        "index_step_s": index_s,
        "plain_passages_per_s": plain_rate,
        "index_passages_per_s": index_rate,
        "ratio": index_rate / plain_rate,
        "goal_ratio": 0.9,
        "index_reports": reports,
    }
    last = reports[-1]
    md = (
        "# Index throughput: index step vs plain SentenceTransformer.encode\n\n"
        f"{out['date']}; {out['machine']['cores']} CPU cores ({out['machine']['cpu']}), device {embedder.device}, "
        f"torch threads {out['torch_threads']}, embedding {embedder.precision}; "
        f"{len(rows)} articles -> {len(chunks)} passages "
        f"({tokens:,} tokens); embedder {embedder.name}, batch {rag.embedding.batch_size}; LanceDB; "
        f"median of {args.repeats} runs, alternating which side goes first.\n\n"
        "| what | seconds (median) | passages/s |\n| --- | --- | --- |\n"
        f"| plain `encode` (one call, all passages) | {statistics.median(plain_s):.1f} | {plain_rate:.1f} |\n"
        f"| index step (chunk, check ids, embed, write, build indexes) | {statistics.median(index_s):.1f} "
        f"| {index_rate:.1f} |\n\n"
        f"**Ratio: {out['ratio']:.3f}** (goal >= 0.9). Inside the last index run: embedding {last['embed_s']:.1f} s, "
        f"writes {last['write_s']:.2f} s, total {last['elapsed_s']:.1f} s.\n"
    )
    write_results("index_throughput", out, md)


if __name__ == "__main__":
    main()
