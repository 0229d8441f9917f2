"""Query latency of the LanceDB store at the sample's size and at 10x, and of Weaviate at the sample's size.

Opens the collection `ptwiki-llm index` built for a workdir (the 5,000-article sample), then builds
a 10x copy: every vector repeated 10 times with new ids (copies 1-9 get a tiny Gaussian jitter,
sigma 0.01 then re-normalized, so the HNSW graph does not hold exact duplicates). For each size it
times, over the same questions, the store alone (query vector given): vector top-k, hybrid top-k;
and end to end (embed the question + vector top-k). At the sample size LanceDB searches exactly
(below rag.hnsw.lancedb_min_rows); the 10x copy gets the IVF_HNSW_SQ index, and is also timed
with the index bypassed. Weaviate: the same rows and vectors copied into a collection of a real
weaviate-server (WEAVIATE_URL/WEAVIATE_API_KEY when set, else one started on loopback from the binary
infra/weaviate/build-local.sh builds), timed over the same questions right after LanceDB's 1x.
Results: benchmarks/results/query_latency.{json,md}, with the load average before and after (the machine
may be shared).

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/query_latency.py --workdir .ptwiki
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402
from ptwiki_llm.provenance import machine_info, package_versions  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "query_latency"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
            "mean_ms": statistics.fmean(ms), "n": len(ms)}


def _time(fn: Callable[[int], object], n: int, warmup: int = 5) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def _jittered_copies(source, target_rows: int, dimension: int, rng, schema):
    """``source`` followed by copies of its rows (new ids, vectors jittered with sigma 0.01 and re-normalized) up to
    ``target_rows`` rows."""
    import pyarrow as pa

    parts = [source]
    base_vec = np.asarray(source["vector"].to_pylist(), dtype=np.float32)
    copy = 0
    while sum(p.num_rows for p in parts) < target_rows:
        copy += 1
        take = min(source.num_rows, target_rows - sum(p.num_rows for p in parts))
        vec = base_vec[:take] + rng.normal(0, 0.01, (take, dimension)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        part = source.slice(0, take)
        arrays = {name: part[name] for name in part.column_names}
        arrays["id"] = pa.array([str(uuid.uuid5(uuid.UUID(i), f"fill{copy}")) for i in part["id"].to_pylist()])
        arrays["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), dimension)
        parts.append(pa.table(arrays, schema=schema))
    return pa.concat_tables([p.cast(schema) for p in parts])


def _weaviate_1x(table, embedder, rag, measure, questions: list[str], k: int, end_to_end: bool) -> dict:
    """The LanceDB collection's rows and vectors copied into Weaviate, then timed like LanceDB's."""
    from ptwiki_llm.rag.retrieval import Retriever
    from ptwiki_llm.rag.stores import CollectionSpec
    from ptwiki_llm.rag.stores.base import chunk_from_properties
    from ptwiki_llm.rag.stores.local_weaviate import LocalWeaviate
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    server = None
    if not os.environ.get("WEAVIATE_URL"):
        shutil.rmtree(WORK / "weaviate", ignore_errors=True)
        server = LocalWeaviate(WORK / "weaviate" / "data").start()
        os.environ["WEAVIATE_URL"], os.environ["WEAVIATE_API_KEY"] = server.url, server.api_key
    try:
        store = WeaviateStore(rag.store.weaviate, rag.store, rag.hnsw, rag.keyword)
        spec = CollectionSpec("LatencyBenchmark1x", embedder.dimension, embedder.name, distance=rag.hnsw.distance)
        if store.exists(spec.name):
            store.drop(spec.name)
        store.open(spec)
        source = table.to_arrow()
        chunks = [chunk_from_properties(row["id"], row) for row in source.drop_columns(["vector"]).to_pylist()]
        vectors = np.asarray(source["vector"].to_pylist(), dtype=np.float32)
        started = time.perf_counter()
        store.upsert(chunks, vectors)
        load_s = time.perf_counter() - started
        result = measure(store, "1x weaviate")
        retriever = Retriever(store, embedder, rag.retrieval)
        if end_to_end:
            result["end_to_end_vector"] = _time(
                lambda i: retriever.retrieve(questions[i % len(questions)], k=k, mode="vector"), len(questions))
        result["load_s"] = load_s
        result["server"] = "local weaviate-server (infra/weaviate/run-local.sh)" if server else store.location
        result["server_version"] = store.client.get_meta().get("version")
        store.drop(spec.name)
        store.close()
        return result
    finally:
        if server is not None:
            server.stop()
            os.environ.pop("WEAVIATE_URL", None)
            os.environ.pop("WEAVIATE_API_KEY", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / ".ptwiki")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--scale", type=int, default=10, help="the LanceDB scale copy; 1 = none")
    parser.add_argument("--name", default="query_latency", help="results file name in benchmarks/results/")
    parser.add_argument("--no-weaviate", dest="weaviate", action="store_false", help="LanceDB only")
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                        help="time the stores only, not embedding the question")
    parser.add_argument("--rows", type=int, default=0,
                        help="the 1x size: when the indexed collection holds fewer rows (an index still running), "
                             "its rows are repeated with jitter up to this many (0 = the collection as it is)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    import pyarrow as pa

    from ptwiki_llm.rag.embeddings import load_embedder
    from ptwiki_llm.rag.pointer import current_collection
    from ptwiki_llm.rag.retrieval import open_retriever
    from ptwiki_llm.rag.stores import CollectionSpec
    from ptwiki_llm.rag.stores.lancedb_store import LanceDBStore

    config = load_config(REPO / "configs" / "local.yaml", {"workdir": str(args.workdir.resolve())})
    rag = config.rag
    collection = current_collection(config)
    embedder = load_embedder(config)
    retriever = open_retriever(config, collection, embedder)
    base_store = retriever.store
    table = base_store.table
    rows = table.count_rows()
    real_rows = rows
    rng = np.random.default_rng(42)
    if args.rows > rows:
        from ptwiki_llm.rag.retrieval import Retriever

        shutil.rmtree(WORK / "sample", ignore_errors=True)
        filled = LanceDBStore(WORK / "sample", rag.store, rag.hnsw, rag.keyword,
                              hybrid_candidates=rag.retrieval.hybrid_candidates)
        filled.open(CollectionSpec("Sample", embedder.dimension, embedder.name))
        filled.table.add(_jittered_copies(table.to_arrow(), args.rows, embedder.dimension, rng,
                                          filled.table.schema))
        filled.finalize()
        retriever.close()
        base_store, retriever = filled, Retriever(filled, embedder, rag.retrieval)
        table, rows = filled.table, filled.count()
    titles = sorted(set(table.search().select(["title"]).limit(rows).to_arrow()["title"].to_pylist()))
    questions = [f"O que é {titles[i]}?" for i in rng.choice(len(titles), size=args.queries, replace=False)]
    vectors = embedder.embed_queries(questions)

    def measure(store, label: str) -> dict:
        result = {
            "rows": store.count(),
            "vector_index": "vector" in store._index_names() if store.backend == "lancedb" else "hnsw",
            "vector": _time(lambda i: store.search(vectors[i % len(vectors)], args.k), len(questions)),
            "hybrid": _time(lambda i: store.hybrid(questions[i % len(questions)], vectors[i % len(vectors)], args.k,
                                                   rag.retrieval.alpha), len(questions)),
        }
        print(label, json.dumps(result))
        return result

    sizes = {"1x": measure(base_store, "1x")}
    if args.end_to_end:
        sizes["1x"]["end_to_end_vector"] = _time(
            lambda i: retriever.retrieve(questions[i % len(questions)], k=args.k, mode="vector"), len(questions))
    weaviate = _weaviate_1x(table, embedder, rag, measure, questions, args.k, args.end_to_end) if args.weaviate \
        else None

    if args.scale > 1:  # --- the 10x copy ---
        shutil.rmtree(WORK, ignore_errors=True)
        big_config = load_config(REPO / "configs" / "local.yaml", {"workdir": str(WORK)})
        big = LanceDBStore(WORK / "lancedb", big_config.rag.store, big_config.rag.hnsw, big_config.rag.keyword,
                           hybrid_candidates=rag.retrieval.hybrid_candidates)
        spec = CollectionSpec(f"Scale{args.scale}x", embedder.dimension, embedder.name)
        big.open(spec)
        source = table.to_arrow()
        started = time.perf_counter()
        base_vec = np.asarray(source["vector"].to_pylist(), dtype=np.float32)
        for copy in range(args.scale):
            vec = base_vec
            if copy:
                vec = base_vec + rng.normal(0, 0.01, base_vec.shape).astype(np.float32)
                vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            ids = [str(uuid.uuid5(uuid.UUID(i), str(copy))) for i in source["id"].to_pylist()]
            arrays = {name: source[name] for name in source.column_names}
            arrays["id"] = pa.array(ids)
            arrays["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), embedder.dimension)
            big.table.add(pa.table(arrays, schema=big.table.schema))
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        big.finalize()
        finalize_s = time.perf_counter() - started
        sizes[f"{args.scale}x"] = measure(big, f"{args.scale}x")
        sizes[f"{args.scale}x"]["build"] = {"load_s": load_s, "finalize_s": finalize_s}
        exact = big.table
        sizes[f"{args.scale}x"]["vector_exact"] = _time(
            lambda i: exact.search(vectors[i % len(vectors)], vector_column_name="vector").distance_type("cosine")
            .bypass_vector_index().limit(args.k).select(["id", "text", "_distance"]).to_arrow(), len(questions))
    retriever.close()

    out = {
        "benchmark": "query_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "packages": package_versions(("ptwiki-llm", "lancedb", "sentence-transformers", "torch")),
        "collection": collection,
        "k": args.k,
        "alpha": rag.retrieval.alpha,
        "hybrid_candidates": rag.retrieval.hybrid_candidates,
        "hnsw": rag.hnsw.model_dump(),
        "queries": len(questions),
        "real_rows": real_rows,
        "sizes": sizes,
        "weaviate": weaviate,
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
    }
    s1, sn = sizes["1x"], sizes.get(f"{args.scale}x") if args.scale > 1 else None
    row = "| {size} | {rows:,} | {what} | {p50:.1f} | {p95:.1f} |"
    lines = [
        "# Query latency (LanceDB, embedded; Weaviate, a local server)",
        "",
        f"{out['date']}; {out['machine']['cores']} CPU cores ({out['machine']['cpu']}), 1-minute load average "
        f"{load_before[0]:.1f} before and {out['load_average_1m']['after']:.1f} after (above the core count: the "
        f"machine was shared with other work, so absolute numbers are pessimistic; the stores were timed one "
        f"after the other on the same questions); {len(questions)} questions "
        f"(\"O que é <title>?\"), k={args.k}, hybrid alpha={rag.retrieval.alpha} over "
        f"{rag.retrieval.hybrid_candidates} candidates per list."
        + ("" if sn is None else f" {args.scale}x = the sample's vectors repeated {args.scale} times (copies "
           "jittered, sigma 0.01).")
        + ("" if real_rows == s1["rows"] else f" 1x: the {real_rows:,} passages of an unfinished index of the "
           f"whole sample, repeated with the same jitter up to {s1['rows']:,} rows."),
        "",
        "| store, size | rows | query | p50 ms | p95 ms |",
        "| --- | --- | --- | --- | --- |",
        row.format(size="1x LanceDB", rows=s1["rows"], what="vector (exact)", p50=s1["vector"]["p50_ms"],
                   p95=s1["vector"]["p95_ms"]),
        row.format(size="1x LanceDB", rows=s1["rows"], what="hybrid", p50=s1["hybrid"]["p50_ms"],
                   p95=s1["hybrid"]["p95_ms"]),
        *([] if "end_to_end_vector" not in s1 else [
            row.format(size="1x LanceDB", rows=s1["rows"], what="embed question + vector",
                       p50=s1["end_to_end_vector"]["p50_ms"], p95=s1["end_to_end_vector"]["p95_ms"])]),
        *([] if sn is None else [
            row.format(size=f"{args.scale}x LanceDB", rows=sn["rows"], what="vector (IVF_HNSW_SQ)" if sn["vector_index"]
                       else "vector (exact)", p50=sn["vector"]["p50_ms"], p95=sn["vector"]["p95_ms"]),
            row.format(size=f"{args.scale}x LanceDB", rows=sn["rows"], what="vector (exact, index bypassed)",
                       p50=sn["vector_exact"]["p50_ms"], p95=sn["vector_exact"]["p95_ms"]),
            row.format(size=f"{args.scale}x LanceDB", rows=sn["rows"], what="hybrid", p50=sn["hybrid"]["p50_ms"],
                       p95=sn["hybrid"]["p95_ms"]),
        ]),
        *([] if weaviate is None else [
            row.format(size="1x Weaviate", rows=weaviate["rows"], what="vector (HNSW)",
                       p50=weaviate["vector"]["p50_ms"], p95=weaviate["vector"]["p95_ms"]),
            row.format(size="1x Weaviate", rows=weaviate["rows"], what="hybrid", p50=weaviate["hybrid"]["p50_ms"],
                       p95=weaviate["hybrid"]["p95_ms"]),
        ]),
        *([] if weaviate is None or "end_to_end_vector" not in weaviate else [
            row.format(size="1x Weaviate", rows=weaviate["rows"], what="embed question + vector",
                       p50=weaviate["end_to_end_vector"]["p50_ms"], p95=weaviate["end_to_end_vector"]["p95_ms"])]),
        "",
        *([] if weaviate is None else [
            f"Weaviate {weaviate['server_version']} ({weaviate['server']}): the 1x rows and vectors loaded in "
            f"{weaviate['load_s']:.1f} s; HNSW ef={rag.hnsw.ef} (-1: dynamic), efConstruction "
            f"{rag.hnsw.ef_construction}, maxConnections {rag.hnsw.max_connections}; hybrid is Weaviate's "
            "relativeScoreFusion with the same alpha.", ""]),
        *([] if sn is None else [
            f"Building the {args.scale}x copy: load {sn['build']['load_s']:.1f} s, indexes (BTREE id, BM25 text, "
            f"IVF_HNSW_SQ vector) {sn['build']['finalize_s']:.1f} s."]),
    ]
    write_results(args.name, out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
