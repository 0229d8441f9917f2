"""Benchmark: Enterprise HTML snapshot ingest on the real 5,000-article ptwiki sample, one core.

Runs ``EnterpriseHtmlSource.records()`` and ``convert`` over every line of
``ptwiki_namespace_0_sample.tar.gz`` in a single process (what one ingest worker does, plus the
reader) and reports:

- articles/s and MB/s (uncompressed NDJSON) end to end, and for ``convert`` alone (the part that
  scales with workers), against wall clock and CPU time;
- how many articles end up skipped, and why (``empty`` is a page with no prose left);
- the share of kept articles whose text still contains markup: ``{{``, ``}}``, ``[[``, ``<ref``,
  ``{|``, ``|-`` or an HTML tag ``<[a-zA-Z/][^>]*>``, with examples. Formulas are kept as TeX, whose
  braces match ``{{``/``}}``; hits on lines that contain a backslash are counted apart as TeX;
- peak RSS (``resource.getrusage``).

Usage: ``python benchmarks/ingest_html.py [--input PATH] [--limit N]``.
Writes ``benchmarks/results/ingest_html.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, find_asset, write_results  # noqa: E402 - needs the sys.path line above
from ptwiki_llm.data.article import Article  # noqa: E402
from ptwiki_llm.data.sources.base import ConvertOptions  # noqa: E402
from ptwiki_llm.data.sources.enterprise_html import EnterpriseHtmlSource  # noqa: E402

ASSET = "data/ptwiki_namespace_0_sample.tar.gz"
RESIDUAL = {
    "{{": re.compile(r"\{\{"),
    "}}": re.compile(r"\}\}"),
    "[[": re.compile(r"\[\["),
    "<ref": re.compile(r"<ref"),
    "{|": re.compile(r"\{\|"),
    "|-": re.compile(r"\|-"),
    "html_tag": re.compile(r"<[a-zA-Z/][^>]*>"),
}
EXAMPLES_PER_PATTERN = 3


def residual_hits(text: str) -> tuple[set[str], set[str]]:
    """Patterns found in ``text``: (outside TeX lines, only on TeX lines)."""
    plain: set[str] = set()
    tex: set[str] = set()
    for name, pattern in RESIDUAL.items():
        for match in pattern.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            line_end = text.find("\n", match.end())
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            if "\\" in line:
                tex.add(name)
            else:
                plain.add(name)
                break
    return plain, tex - plain


def snippet(text: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(text)
    if match is None:
        return ""
    return text[max(0, match.start() - 60) : match.end() + 60].replace("\n", " ⏎ ")


def run(path: Path, limit: int | None) -> dict[str, Any]:
    source = EnterpriseHtmlSource(path)
    options = ConvertOptions()
    records = ndjson_bytes = articles = text_chars = 0
    convert_s = 0.0
    skipped: Counter[str] = Counter()
    residual_any = residual_tex_only = 0
    per_pattern: Counter[str] = Counter()
    per_pattern_tex: Counter[str] = Counter()
    examples: dict[str, list[dict[str, str]]] = {name: [] for name in RESIDUAL}
    empty_titles: list[str] = []

    wall0, cpu0 = time.perf_counter(), time.process_time()
    for record in source.records():
        records += 1
        ndjson_bytes += len(record.payload)
        start = time.perf_counter()
        result = source.convert(record, options)
        convert_s += time.perf_counter() - start
        if not isinstance(result, Article):
            skipped[result.reason] += 1
            if result.reason == "empty" and len(empty_titles) < 20:
                empty_titles.append(result.title)
        else:
            articles += 1
            text_chars += len(result.text)
            plain, tex = residual_hits(result.text)
            residual_any += bool(plain)
            residual_tex_only += bool(tex) and not plain
            per_pattern.update(plain)
            per_pattern_tex.update(tex)
            for name in plain:
                if len(examples[name]) < EXAMPLES_PER_PATTERN:
                    examples[name].append({"title": result.title, "text": snippet(result.text, RESIDUAL[name])})
        if limit and records >= limit:
            break
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    mb = ndjson_bytes / 1e6
    return {
        "input": {
            "path": path.name,
            "compressed_bytes": path.stat().st_size,
            "ndjson_bytes": ndjson_bytes,
            "records": records,
        },
        "timing": {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "convert_s": round(convert_s, 3)},
        "rates": {
            "articles_per_s_wall": round(records / wall, 1),
            "articles_per_cpu_s": round(records / cpu, 1),
            "mb_per_s_wall": round(mb / wall, 2),
            "mb_per_cpu_s": round(mb / cpu, 2),
            "convert_articles_per_s": round(records / convert_s, 1),
            "convert_mb_per_s": round(mb / convert_s, 2),
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "output": {
            "articles": articles,
            "skipped": dict(skipped),
            "empty_titles": empty_titles,
            "text_chars": text_chars,
            "residual_markup_articles": residual_any,
            "residual_markup_share": round(residual_any / articles, 5) if articles else None,
            "residual_tex_only_articles": residual_tex_only,
            "residual_by_pattern": dict(per_pattern),
            "residual_by_pattern_tex_lines": dict(per_pattern_tex),
            "residual_examples": {k: v for k, v in examples.items() if v},
        },
    }


def markdown(result: dict[str, Any]) -> str:
    m, i, r, o, t = (result[k] for k in ("machine", "input", "rates", "output", "timing"))
    share = o["residual_markup_share"] or 0.0
    lines = [
        "# Enterprise HTML snapshot ingest (one process, one core)",
        "",
        f"Input: `{i['path']}`, {i['records']} real ptwiki articles (2016 MediaWiki renders), "
        f"{i['ndjson_bytes'] / 1e6:.1f} MB NDJSON, {i['compressed_bytes'] / 1e6:.1f} MB tar.gz.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), Python {m['python']}, "
        f"lxml {m['packages']['lxml']}, {m['platform']}; {m['date_utc']}.",
        "",
        "| path | wall s | CPU s | articles/s (wall) | articles/CPU-s | MB/s (wall) | MB/CPU-s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| records() + convert, 1 process | {t['wall_s']} | {t['cpu_s']} | {r['articles_per_s_wall']} | "
        f"{r['articles_per_cpu_s']} | {r['mb_per_s_wall']} | {r['mb_per_cpu_s']} |",
        f"| convert alone (JSON + clean_html) | {t['convert_s']} | | {r['convert_articles_per_s']} | | "
        f"{r['convert_mb_per_s']} | |",
        "",
        f"Peak RSS: {result['peak_rss_mib']} MiB.",
        "",
        f"Output: {o['articles']} articles kept, skipped {o['skipped'] or 'none'} "
        f"({', '.join(o['empty_titles']) or '-'}); {o['text_chars'] / 1e6:.1f} M characters of text.",
        "",
        f"Residual markup (`{{{{`, `}}}}`, `[[`, `<ref`, `{{|`, `|-`, HTML tag) outside formulas: "
        f"**{o['residual_markup_articles']} articles ({share:.2%})**; by pattern {o['residual_by_pattern']}. "
        f"A further {o['residual_tex_only_articles']} articles match only on TeX formula lines "
        f"({o['residual_by_pattern_tex_lines']}), kept on purpose.",
        "",
        "Examples (text as the page has it):",
        "",
    ]
    for name, items in o["residual_examples"].items():
        for item in items:
            lines.append(f"- `{name}` in *{item['title']}*: {item['text']!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input", type=Path, default=None, help=f"snapshot (default: the staged {ASSET})")
    parser.add_argument("--limit", type=int, default=None, help="stop after N records")
    args = parser.parse_args()
    path = args.input or find_asset(ASSET)
    result = {"benchmark": "ingest_html", "machine": benchmark_machine("lxml"), **run(path, args.limit)}
    text = markdown(result)
    write_results("ingest_html", result, text)
    print(text)


if __name__ == "__main__":
    main()
