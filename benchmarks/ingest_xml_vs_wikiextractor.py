"""Benchmark: MediaWiki XML dump ingest (ours) against WikiExtractor, on one core.

No real ptwiki dump of useful size is staged, so the input is synthetic in volume but real in
content: the one real ptwiki page we have ("Berlim", 66 KB of wikitext) repeated N times with
distinct page ids, revision ids and titles, in a bz2-compressed export-0.10 XML file. A second
input repeats a shorter page, the same wikitext cut before "=== Primórdios ===" (lead,
"Etimologia", "História": about 9 KB), closer to the size of a typical article.

Measured in one run, on the same files:

- ours: ``MediaWikiXmlSource.records()`` + ``convert`` + one JSON line written per article, in a
  single process (single core); like WikiExtractor it is timed from outside, so interpreter
  start-up and imports count for both;
- WikiExtractor ``--processes 1 --no-templates``: its reader, one extract worker and its writer
  are three processes, so besides the wall-clock rate we report articles per CPU second (user +
  sys of the whole process tree), the fair per-core figure;
- each path runs ``--repeats`` times (alternating) and the least-disturbed run is reported;
- peak RSS of ours at two dump sizes, plus RSS sampled during the run, to show memory stays flat;
- the cleaner alone on the Berlim wikitext, against mwparserfromhell's ``strip_code``.

Usage: ``python benchmarks/ingest_xml_vs_wikiextractor.py [PAGES] [--short-pages 10000]
[--rss-pages 1000 4000]``. Writes ``benchmarks/results/ingest_xml.json`` and ``.md``; dumps and
outputs go to ``benchmarks/work/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import bz2
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, find_asset, write_results  # noqa: E402 - needs the sys.path line above

ASSET = "data/ptwiki_dbpedia_minidump_berlim.xml.bz2"
WORK = REPO / "benchmarks" / "work"
RSS_SAMPLE_EVERY = 500
SHORT_CUT = "=== Primórdios ==="


def page_template(short: bool) -> tuple[str, str, str]:
    """Header, one page with {title}/{page_id}/{rev_id} placeholders, footer."""
    xml = bz2.decompress(find_asset(ASSET).read_bytes()).decode("utf-8")
    if short:
        xml = xml[: xml.index(SHORT_CUT)] + xml[xml.index("</text>") :]
    start = xml.index("<page>")
    end = xml.index("</page>") + len("</page>")
    header, page, footer = xml[:start], xml[start:end], xml[end:]
    page = page.replace("<title>Berlim</title>", "<title>{title}</title>", 1)
    page = page.replace("<id>488</id>", "<id>{page_id}</id>", 1)
    page = page.replace("<id>62017799</id>", "<id>{rev_id}</id>", 1)
    assert page.count("{title}") == page.count("{page_id}") == page.count("{rev_id}") == 1
    return header, page, footer


def dump_chunks(header: str, page: str, footer: str, pages: int) -> Iterator[str]:
    yield header
    # str.replace, not str.format: the wikitext is full of braces.
    for n in range(pages):
        yield (
            page.replace("{title}", f"Berlim (cópia {n + 1})")
            .replace("{page_id}", str(100_000 + n))
            .replace("{rev_id}", str(62_000_000 + n))
        )
        yield "\n  "
    yield footer


def build_dump(pages: int, short: bool = False) -> tuple[Path, dict[str, Any]]:
    """A bz2 dump of ``pages`` copies of the page (cached in the work folder by name)."""
    out = WORK / f"berlim{'_short' if short else ''}_x{pages}.xml.bz2"
    meta_path = out.with_suffix(".meta.json")
    if out.exists() and meta_path.exists():
        return out, json.loads(meta_path.read_text())
    header, page, footer = page_template(short)
    xml_bytes = 0
    tmp = out.with_suffix(".tmp")
    with bz2.open(tmp, "wb", compresslevel=9) as dump:
        for chunk in dump_chunks(header, page, footer, pages):
            data = chunk.encode("utf-8")
            xml_bytes += len(data)
            dump.write(data)
    tmp.replace(out)
    meta = {
        "pages": pages,
        "page_xml_bytes": len(page.encode("utf-8")),
        "xml_bytes": xml_bytes,
        "bz2_bytes": out.stat().st_size,
    }
    meta_path.write_text(json.dumps(meta))
    return out, meta


def run_ours(dump: Path, out_jsonl: Path) -> dict[str, Any]:
    """Child-process body: read, convert and write every page; report timings and memory."""
    import psutil

    from ptwiki_llm.data.article import Article
    from ptwiki_llm.data.sources.base import ConvertOptions
    from ptwiki_llm.data.sources.mediawiki_xml import MediaWikiXmlSource

    process = psutil.Process()
    options = ConvertOptions()
    articles = skipped = 0
    rss_samples: list[tuple[int, float]] = [(0, round(process.memory_info().rss / 2**20, 1))]
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with out_jsonl.open("w", encoding="utf-8") as sink:
        source = MediaWikiXmlSource(dump)
        for n, record in enumerate(source.records(), 1):
            result = source.convert(record, options)
            if isinstance(result, Article):
                articles += 1
                sink.write(json.dumps(result.to_row(), ensure_ascii=False))
                sink.write("\n")
            else:
                skipped += 1
            if n % RSS_SAMPLE_EVERY == 0:
                rss_samples.append((n, round(process.memory_info().rss / 2**20, 1)))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {
        "articles": articles,
        "skipped": skipped,
        "loop_wall_s": wall,
        "loop_cpu_s": cpu,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_samples_mib": rss_samples,
    }


def measure_ours(dump: Path) -> dict[str, Any]:
    # A fresh process per run, so peak RSS belongs to that dump alone; wall and CPU time are
    # taken from outside, as for WikiExtractor, so both include interpreter start and imports.
    out = WORK / f"ours_{dump.name}.jsonl"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--_child-ours", str(dump), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.unlink(missing_ok=True)
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    run["wall_s"] = wall
    run["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run


def measure_wikiextractor(dump: Path) -> dict[str, Any]:
    out = WORK / "wikiextractor_out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump),
        "--processes", "1", "--no-templates", "-q", "-o", str(out),
    ]  # fmt: skip
    # RUSAGE_CHILDREN covers WikiExtractor's own worker and writer processes too: it joins them
    # before exiting, so their CPU time is folded into its own children's usage.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"WikiExtractor failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    docs = sum(f.read_text(encoding="utf-8").count("<doc ") for f in out.rglob("wiki_*"))
    shutil.rmtree(out, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"articles": docs, "wall_s": wall, "cpu_s": cpu, "command": " ".join(cmd[1:])}


def rates(run: dict[str, Any], meta: dict[str, Any]) -> dict[str, float]:
    mb = meta["xml_bytes"] / 1e6
    wall, cpu, n = float(run["wall_s"]), float(run["cpu_s"]), int(run["articles"])
    return {
        "articles_per_s_wall": round(n / wall, 1),
        "mb_per_s_wall": round(mb / wall, 2),
        "articles_per_cpu_s": round(n / cpu, 1),
        "mb_per_cpu_s": round(mb / cpu, 2),
    }


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    # The machine may be shared: the run least disturbed by other load is the one with the
    # least CPU time; every run's timings are kept alongside it.
    best = dict(min(runs, key=lambda run: run["cpu_s"]))
    best["all_runs"] = [{"wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3)} for r in runs]
    return best


def compare(name: str, pages: int, short: bool, repeats: int) -> dict[str, Any]:
    dump, meta = build_dump(pages, short)
    print(f"[{name}] {dump.name}: {meta['xml_bytes'] / 1e6:.1f} MB XML, {meta['bz2_bytes'] / 1e6:.2f} MB bz2")
    ours_runs, wx_runs = [], []
    for repeat in range(repeats):
        # Alternating, so a burst of outside load does not land on one side only.
        ours_runs.append(measure_ours(dump))
        wx_runs.append(measure_wikiextractor(dump))
        print(
            f"[{name}] run {repeat + 1}: ours {rates(ours_runs[-1], meta)['articles_per_cpu_s']} articles/CPU-s, "
            f"WikiExtractor {rates(wx_runs[-1], meta)['articles_per_cpu_s']}",
            flush=True,
        )
    ours, wx = best_of(ours_runs), best_of(wx_runs)
    ours["rates"], wx["rates"] = rates(ours, meta), rates(wx, meta)
    if ours["articles"] != pages or wx["articles"] != pages:
        raise SystemExit(f"[{name}] article counts differ: ours {ours['articles']}, WikiExtractor {wx['articles']}")
    return {
        "input": name,
        "dump": meta,
        "ours": ours,
        "wikiextractor": wx,
        "speedup_per_cpu_second": round(ours["rates"]["articles_per_cpu_s"] / wx["rates"]["articles_per_cpu_s"], 2),
        "speedup_wall_clock": round(ours["rates"]["articles_per_s_wall"] / wx["rates"]["articles_per_s_wall"], 2),
    }


def cleaner_micro() -> dict[str, float]:
    """Milliseconds per call on the real Berlim wikitext: our cleaner vs mwparserfromhell."""
    import mwparserfromhell
    from lxml import etree

    from ptwiki_llm.data.wikitext import clean_wikitext

    root = etree.fromstring(bz2.decompress(find_asset(ASSET).read_bytes()))
    text = root.findtext(".//{*}revision/{*}text")

    def per_call(fn, repeat: int) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t0) / repeat * 1000

    return {
        "ours_clean_wikitext_ms": round(per_call(lambda: clean_wikitext(text), 50), 2),
        "mwparserfromhell_strip_code_ms": round(per_call(lambda: mwparserfromhell.parse(text).strip_code(), 5), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# MediaWiki XML ingest: ours vs WikiExtractor",
        "",
        "Inputs are synthetic in volume, real in content: the real ptwiki page *Berlim* (id 488, rev "
        "62017799, 66 KB of wikitext, 144 templates, 105 refs, 2 tables) repeated with distinct page ids, "
        f"revision ids and titles; the short input is the same page cut before `{SHORT_CUT}` "
        "(lead, Etimologia, História). bz2-compressed export-0.10 XML; MB are uncompressed XML.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), "
        f"Python {m['python']}, {m['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; {m['date_utc']}.",
        "",
        "| input | path | articles | wall s | CPU s | articles/s (wall) | MB/s (wall) | articles/CPU-s | MB/CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for comparison in result["comparisons"]:
        d = comparison["dump"]
        label = (
            f"{comparison['input']}: {d['pages']} x {d['page_xml_bytes'] / 1000:.1f} KB = {d['xml_bytes'] / 1e6:.1f} MB"
        )
        for name, key in (
            ("ours: records() + convert + JSONL, 1 process", "ours"),
            ("WikiExtractor --processes 1 --no-templates", "wikiextractor"),
        ):
            run = comparison[key]
            r = run["rates"]
            lines.append(
                f"| {label} | {name} | {run['articles']} | {run['wall_s']:.2f} | {run['cpu_s']:.2f} "
                f"| {r['articles_per_s_wall']} | {r['mb_per_s_wall']} "
                f"| {r['articles_per_cpu_s']} | {r['mb_per_cpu_s']} |"
            )
    lines += [""]
    for comparison in result["comparisons"]:
        lines.append(
            f"- {comparison['input']}: ours is **{comparison['speedup_per_cpu_second']}x** WikiExtractor in "
            f"articles per CPU second (per core), {comparison['speedup_wall_clock']}x in wall clock."
        )
    lines += [
        "",
        "WikiExtractor with `--processes 1` still runs a reader, one extractor and a writer process, so its "
        "wall-clock rate uses more than one core; articles per CPU second is the per-core comparison. Both "
        "paths pay the same bz2 decompression (Python's `bz2`, about 1 ms per Berlim copy here). Each path "
        f"ran {result['repeats']} times, alternating; the table shows the run with the least CPU time (all "
        "runs are in the JSON).",
        "",
        "Peak RSS of ours (a fresh process per size, full input: records + convert + JSONL):",
        "",
        "| pages | XML MB | peak RSS MiB | RSS sampled during the run (pages: MiB) |",
        "|---:|---:|---:|---|",
    ]
    for row in result["memory"]:
        samples = ", ".join(f"{n}: {mib}" for n, mib in row["rss_samples_mib"])
        lines.append(f"| {row['pages']} | {row['xml_mb']} | {row['peak_rss_mib']} | {samples} |")
    c = result["cleaner_only_berlim"]
    lines += [
        "",
        f"Cleaner alone on the Berlim wikitext: `clean_wikitext` {c['ours_clean_wikitext_ms']} ms, "
        f"mwparserfromhell `parse().strip_code()` {c['mwparserfromhell_strip_code_ms']} ms per page.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="?", type=int, default=2000, help="copies of the full page (2000)")
    parser.add_argument("--short-pages", type=int, default=10000, help="copies of the short page (10000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the best is reported (3)")
    parser.add_argument("--rss-pages", type=int, nargs=2, default=[1000, 4000], help="sizes for peak RSS")
    parser.add_argument("--_child-ours", nargs=2, metavar=("DUMP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child_ours:
        print(json.dumps(run_ours(Path(args._child_ours[0]), Path(args._child_ours[1]))))
        return 0

    WORK.mkdir(parents=True, exist_ok=True)
    print(
        f"input: the real Berlim page repeated {args.pages} times, and its first sections repeated "
        f"{args.short_pages} times, with distinct ids/titles",
        flush=True,
    )
    comparisons = [compare("full page", args.pages, short=False, repeats=args.repeats)]
    if args.short_pages:
        comparisons.append(compare("short page", args.short_pages, short=True, repeats=args.repeats))

    memory = []
    for size in args.rss_pages:
        dump, meta = build_dump(size)
        run = measure_ours(dump)
        memory.append(
            {
                "pages": size,
                "xml_mb": round(meta["xml_bytes"] / 1e6, 1),
                "peak_rss_mib": run["peak_rss_mib"],
                "rss_samples_mib": run["rss_samples_mib"],
                "articles_per_s_wall": round(int(run["articles"]) / float(run["wall_s"]), 1),
            }
        )
        print(f"memory at {size} pages: peak RSS {run['peak_rss_mib']} MiB", flush=True)

    result = {
        "benchmark": "ingest_xml_vs_wikiextractor",
        "machine": benchmark_machine("lxml", "wikiextractor", "mwparserfromhell", "psutil"),
        "content": "real ptwiki page Berlim (id 488, rev 62017799) repeated with distinct ids/titles",
        "repeats": args.repeats,
        "comparisons": comparisons,
        "memory": memory,
        "cleaner_only_berlim": cleaner_micro(),
    }
    write_results("ingest_xml", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
