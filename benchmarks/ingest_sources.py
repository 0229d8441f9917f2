"""Ingest engine throughput and peak memory, per source format, at two input sizes.

Runs the whole `ptwiki_llm.data.ingest.ingest` (read, clean, write parquet shards, manifest) in a
fresh subprocess per case, so peak RSS is that of one ingest alone:

- enterprise_html: the staged 5,000-article snapshot (first 1,000 and all 5,000 records);
- mediawiki_xml: the real Berlim page repeated with distinct ids (1,000 and 4,000 pages; real content,
  synthetic volume), bz2-compressed;
- extracted: JSONL made from the cleaned sample articles (1,000 and 5,000 rows).

Each case runs with 1 worker (in-process: per-core rates) and with one worker per core. MB/s counts
uncompressed input bytes. Results: benchmarks/results/ingest_sources.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/ingest_sources.py
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import find_asset, write_results  # noqa: E402
from ptwiki_llm.provenance import machine_info, package_versions  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "ingest_sources"


def _uncompressed_size(path: Path) -> int:
    if path.name.endswith(".bz2"):
        with bz2.open(path, "rb") as handle:
            return sum(len(chunk) for chunk in iter(lambda: handle.read(1 << 20), b""))
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "r:gz") as tar:
            return sum(member.size for member in tar.getmembers())
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return sum(len(chunk) for chunk in iter(lambda: handle.read(1 << 20), b""))
    return path.stat().st_size


def build_html(limit: int) -> Path:
    """The first ``limit`` records of the staged snapshot, re-packed as a tar.gz."""
    sample = find_asset("data/ptwiki_namespace_0_sample.tar.gz")
    target = WORK / f"enterprise_{limit}.tar.gz"
    if target.exists():
        return target
    lines: list[bytes] = []
    with tarfile.open(sample, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member)
            if handle is None:
                continue
            for line in handle:
                lines.append(line)
                if len(lines) == limit:
                    break
            break
    payload = b"".join(lines)
    with tarfile.open(target, "w:gz") as out:
        info = tarfile.TarInfo("ptwiki_namespace_0_0.ndjson")
        info.size = len(payload)
        import io

        out.addfile(info, io.BytesIO(payload))
    return target


def build_xml(pages: int) -> Path:
    from benchmarks.ingest_xml_vs_wikiextractor import build_dump

    dump, _ = build_dump(pages)  # cached in that benchmark's work folder
    return dump


def build_extracted(limit: int) -> Path:
    """Cleaned sample articles as HF-style JSONL (id, url, title, text)."""
    import pyarrow.parquet as pq

    from ptwiki_llm.config import IngestConfig
    from ptwiki_llm.data.ingest import ingest
    from ptwiki_llm.data.sources.base import ConvertOptions

    target = WORK / f"extracted_{limit}.jsonl"
    if target.exists():
        return target
    articles = WORK / "sample_articles"
    if not (articles / "manifest.json").exists():
        ingest(find_asset("data/ptwiki_namespace_0_sample.tar.gz"), articles, ConvertOptions(),
               IngestConfig(workers=0), show_progress=False)
    written = 0
    with target.open("w", encoding="utf-8") as out:
        for shard in sorted(articles.glob("part-*.parquet")):
            for row in pq.read_table(shard, columns=["id", "url", "title", "text"]).to_pylist():
                if written == limit:
                    break
                row["id"] = str(row["id"])
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
    return target


def child(input_path: str, out_dir: str, workers: int) -> None:
    """One ingest; prints its manifest numbers and this process's peak RSS as JSON."""
    from ptwiki_llm.config import IngestConfig
    from ptwiki_llm.data.ingest import ingest
    from ptwiki_llm.data.sources.base import ConvertOptions

    started = time.perf_counter()
    cpu0 = time.process_time()
    result = ingest(Path(input_path), Path(out_dir), ConvertOptions(), IngestConfig(workers=workers),
                    show_progress=False)
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "wall_s": wall,
        "cpu_s_main": time.process_time() - cpu0,
        "cpu_s_workers": children.ru_utime + children.ru_stime,
        "peak_rss_mib_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_mib_worker": children.ru_maxrss / 1024,
        "counts": result.manifest["counts"],
        "source_kind": result.manifest["source_kind"],
    }))


def measure(path: Path, workers: int) -> dict[str, Any]:
    out_dir = WORK / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(out_dir), str(workers)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    mb = _uncompressed_size(path) / 1e6
    read = run["counts"]["read"]
    cpu = run["cpu_s_main"] + run["cpu_s_workers"]
    run.update({
        "input": path.name,
        "workers": workers,
        "input_mb_uncompressed": round(mb, 2),
        "articles_per_s": round(read / run["wall_s"], 1),
        "mb_per_s": round(mb / run["wall_s"], 2),
        "articles_per_cpu_s": round(read / cpu, 1),
        "mb_per_cpu_s": round(mb / cpu, 2),
    })
    return run


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Ingest throughput and peak memory by source",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; "
        f"{', '.join(f'{k} {v}' for k, v in result['versions'].items())}; {result['date']}.",
        "",
        "Whole ingest (read, clean, parquet shards, manifest) in a fresh process. Per core = 1 worker "
        "(in-process); MB = uncompressed input. XML = the real Berlim page repeated (synthetic volume).",
        "",
        "| source | input | articles read | workers | wall s | articles/s | MB/s | articles/CPU-s | "
        "peak RSS main MiB | peak RSS worker MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['source_kind']} | {run['input']} | {run['counts']['read']} | {run['workers']} | "
            f"{run['wall_s']:.2f} | {run['articles_per_s']} | {run['mb_per_s']} | {run['articles_per_cpu_s']} | "
            f"{run['peak_rss_mib_main']:.0f} | {run['peak_rss_mib_worker']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("INPUT", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], help="XML pages, small and large")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    small, large = args.sizes
    cases = [
        (build_html(1000), [1]), (build_html(5000), [1, cores]),
        (build_xml(small), [1]), (build_xml(large), [1, cores]),
        (build_extracted(1000), [1]), (build_extracted(5000), [1, cores]),
    ]
    runs = []
    for path, worker_counts in cases:
        for workers in worker_counts:
            run = measure(path, workers)
            print(f"{run['source_kind']:16s} {path.name:40s} workers={workers} "
                  f"{run['articles_per_s']:8.1f} art/s  {run['mb_per_s']:6.2f} MB/s  "
                  f"rss {run['peak_rss_mib_main']:.0f} MiB", flush=True)
            runs.append(run)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(("pyarrow", "lxml")),
        "runs": runs,
    }
    write_results("ingest_sources", result, markdown(result))


if __name__ == "__main__":
    main()
