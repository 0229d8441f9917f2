"""Peak memory of ingest as the number of skipped records grows: streamed skips against a list of them.

Input: extracted-articles JSONL (gzip) whose records are all empty but one, so every record but one is
skipped (reason ``empty``), at two sizes. Each case runs ``ptwiki_llm.data.ingest.ingest`` with one worker
in a fresh subprocess (peak RSS is that ingest's alone):

- streamed: the code as it is (``SkipWriter`` writes ``SKIP_BATCH_ROWS`` rows at a time);
- list (baseline, in the same run): ``SkipWriter`` replaced by one that holds every skipped row and
  writes them at the end, as ingest did before.

Results: benchmarks/results/ingest_skips_memory.{json,md}.
Usage: .venv/bin/python benchmarks/ingest_skips_memory.py [--sizes 200000 2000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, write_results  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "ingest_skips_memory"


def build(records: int) -> Path:
    path = WORK / f"skips-{records}.jsonl.gz"
    if path.is_file():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    text = "O rio Douro nasce em Espanha e desagua no oceano Atlântico, no Porto. " * 3
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as out:
        for i in range(1, records + 1):
            body = text if i == records else ""
            out.write(json.dumps({"id": str(i), "url": f"u{i}", "title": f"Artigo {i}", "text": body}) + "\n")
    partial.rename(path)
    return path


def child(input_path: str, out_dir: str, mode: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptwiki_llm.config import IngestConfig
    from ptwiki_llm.data import ingest as ingest_module
    from ptwiki_llm.data.article import SKIPPED_SCHEMA
    from ptwiki_llm.data.sources.base import ConvertOptions

    if mode == "list":
        class ListSkips:  # the baseline: every skipped row in memory, one table at the end
            def __init__(self, path: Path, batch_rows: int | None = None) -> None:
                self.path, self.rows = path, []

            def add_row(self, row: dict[str, Any]) -> None:
                self.rows.append(row)

            def close(self) -> None:
                pq.write_table(pa.Table.from_pylist(self.rows, schema=SKIPPED_SCHEMA), self.path)

        ingest_module.SkipWriter = ListSkips  # type: ignore[misc,assignment]
    started = time.perf_counter()
    result = ingest_module.ingest(Path(input_path), Path(out_dir), ConvertOptions(), IngestConfig(workers=1),
                                  show_progress=False)
    print("RESULT " + json.dumps({
        "elapsed_s": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "counts": result.manifest["counts"],
    }), flush=True)


def measure(path: Path, mode: str) -> dict[str, Any]:
    out = WORK / f"out-{mode}-{path.stem}"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), str(out), mode],
                          capture_output=True, text=True, check=True)
    shutil.rmtree(out, ignore_errors=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    for records in args.sizes:
        path = build(records)
        for mode in ("streamed", "list"):
            measured = measure(path, mode)
            skipped = measured["counts"]["skipped"]["empty"]
            rows.append({"records": records, "skipped": skipped, "mode": mode, **measured})
            print(f"{records:>9} records, {mode:>8}: {measured['peak_rss_mib']} MiB, {measured['elapsed_s']} s",
                  flush=True)
    result = {"machine": benchmark_machine("pyarrow"),
              "note": "a 2-core machine shared with other work while this ran: times are not comparable, peaks are",
              "rows": rows}
    lines = ["# Ingest peak memory against skipped records", "",
             "Every record but one skipped (`empty`); one worker; a fresh process per case. `list` is the "
             "baseline (every skipped row held, written at the end), `streamed` the code as it is.", "",
             "| records | skipped | mode | peak RSS MiB | elapsed s |", "|---:|---:|---|---:|---:|"]
    lines += [f"| {r['records']:,} | {r['skipped']:,} | {r['mode']} | {r['peak_rss_mib']} | {r['elapsed_s']} |"
              for r in rows]
    machine = result["machine"]
    lines += ["", f"Machine: {machine['cpu_model']}, {machine['cpus_usable']} usable cores, {machine['date_utc']}; "
              + result["note"] + "."]
    write_results("ingest_skips_memory", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
