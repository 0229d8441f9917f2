"""The evaluation report: comparison tables (markdown, HTML), plots with intervals, a page of examples."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ptwiki_llm.evaluation.gate import lower_is_better

TASK_TITLES = {"lm": "Language modelling: raw text of held-out articles",
               "lm_format": "Format: templated eval examples (not knowledge)",
               "probes": "Knowledge probes: questions (all arms), masked sentences (closed-book arms)",
               "qa": "Knowledge-injection QA: documents seen by fine-tuning vs held out"}
TASK_ORDER = {"lm": 0, "probes": 1, "qa": 2, "lm_format": 3}


def _fmt(interval: dict[str, float] | None, signed: bool = False) -> str:
    if not interval:
        return "—"
    sign = "+" if signed else ""
    return f"{interval['value']:{sign}.3f} [{interval['low']:{sign}.3f}, {interval['high']:{sign}.3f}]"


def metric_names(result: dict[str, Any]) -> list[str]:
    names = {m for arm in result["metrics"].values() for m in arm}
    return sorted(names, key=lambda m: (TASK_ORDER.get(m.split(".")[0], 9), m.count("."), m))


def comparison_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per metric, one column per arm (value [95% interval])."""
    arms = [a for a in result["arms"] if a in result["metrics"]]
    header = ["metric", *arms]
    rows = []
    for metric in metric_names(result):
        arrow = "↓" if lower_is_better(metric) else "↑"
        rows.append([f"{metric} {arrow}", *(_fmt(result["metrics"][arm].get(metric)) for arm in arms)])
    return header, rows


def difference_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    pairs = list(result["differences"])
    header = ["metric", *pairs]
    rows = []
    for metric in metric_names(result):
        cells = [result["differences"][pair].get(metric) for pair in pairs]
        if any(cells):
            rows.append([metric, *(_fmt(c, signed=True) + (" *" if c and (c["low"] > 0 or c["high"] < 0) else "")
                                   for c in cells)])
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gate_lines(result: dict[str, Any]) -> list[str]:
    gate = result["gate"]
    applied = " (champion alias moved)" if gate.get("applied") else ""
    lines = [f"**Promotion gate**: {gate['outcome']}{applied}; challenger "
             f"{'v' + gate['challenger'] if gate.get('challenger') else 'none'} vs {gate['baseline']}."]
    lines += [f"- {reason}" for reason in gate["reasons"]]
    guards = gate.get("guards") or {}
    if guards:
        lines.append("- guards: " + "; ".join(f"{name} {g.get('status', 'passed' if g.get('passed') else 'failed')}"
                                              for name, g in sorted(guards.items())))
    return lines


def retrieval_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Recall of each retrieval mode on the knowledge-injection questions."""
    modes = result.get("retrieval_modes") or {}
    keys = sorted({k for metrics in modes.values() for k in metrics}, key=lambda k: (k.startswith("mrr"), len(k), k))
    return ["mode", *keys], [[mode, *(f"{metrics.get(k, float('nan')):.3f}" for k in keys)]
                             for mode, metrics in modes.items()]


def _count_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    counts = result["counts"]
    formats = result.get("prompt_formats") or {}
    if formats:
        lines.append("- Prompt format per arm (evaluation.prompt_formats): " + ", ".join(
            f"{arm}: {fmt}" for arm, fmt in formats.items()) + ". chat = the tokenizer's chat template, alpaca = the "
            "instruction template the adapters were trained on; a difference between base and ft arms includes the "
            "format.")
    probes = counts.get("probes") or {}
    if probes:
        lines.append(f"- Probes: {probes.get('probes_train', 0)} from articles whose sentence is in the fine-tuning "
                     f"sample (train), {probes.get('probes_heldout', 0)} from held-out articles (heldout); chance "
                     "accuracy is 1 / (distractors + 1).")
    for name, qa in (counts.get("qa") or {}).items():
        docs = qa.get("documents") or {}
        lines.append(f"- QA {name}: {qa.get('evaluated_seen', 0)} questions on {docs.get('seen', {}).get('documents')} "
                     f"seen documents, {qa.get('evaluated_heldout', 0)} on {docs.get('heldout', {}).get('documents')} "
                     f"held-out documents; {qa['skipped_unanswerable']} unanswerable questions of those documents "
                     f"counted and left out; {qa['no_distractors']} left out for lack of same-type distractors; "
                     f"{qa['offset_mismatches']} answer offsets do not match their context (tolerated).")
    exposure = result.get("fine_tuning_exposure") or {}
    if exposure:
        lines.append(f"- Fine-tuning exposure: the train step reads at most {exposure['trained_tokens_at_most']:,} "
                     f"tokens of its {exposure['fine_tuning_text_tokens']:,}-token texts, so a text in them (probe "
                     f"group train) is read {exposure['expected_passes_per_text']:.3f} times on average and a seen "
                     f"knowledge paragraph (written data.knowledge.repeats times) "
                     f"{exposure['expected_passes_per_knowledge_paragraph']:.3f} times: 'train' and 'seen' mean in "
                     "the fine-tuning texts, which is trained on only as far as this budget reaches.")
    lines += _loop_echo_lines(result)
    retrieval = result.get("retrieval") or {}
    if retrieval:
        lines.append(f"- Retrieval: {retrieval['mode']} (alpha {retrieval['alpha']}), {retrieval['k']} passages per "
                     "RAG item.")
    return lines


LOOP_ECHO_GOAL = 0.05  # share of generated answers that loop or only restate the question, per arm


def _loop_echo_lines(result: dict[str, Any]) -> list[str]:
    """Why an arm's generated answers miss the loop/echo goal: repetitions (cut before an answer is shown) or
    restated questions (shown as no answer)."""
    over = {arm: metrics for arm, metrics in result["metrics"].items()
            if (metrics.get("qa.loop_or_echo") or {}).get("value", 0.0) > LOOP_ECHO_GOAL}
    if not over:
        return []
    parts = ", ".join(f"{arm} {m['qa.loop_or_echo']['value']:.0%} (loop {m.get('qa.loop', {}).get('value', 0):.0%}, "
                      f"echo {m.get('qa.echo', {}).get('value', 0):.0%})" for arm, m in over.items())
    return [f"- Generated QA answers that loop or only restate the question, above the {LOOP_ECHO_GOAL:.0%} goal: "
            f"{parts}. A loop is cut where the repetition starts, so what is shown does not repeat; an answer that "
            "only restates the question is shown as \"(no answer)\". Both are the model's own greedy output; the stop "
            "rules (rag.answer) decide only where it ends and what is shown."]


def markdown_report(result: dict[str, Any]) -> str:
    bootstrap = result["bootstrap"]
    level = round(bootstrap["confidence"] * 100)
    items = ", ".join(f"{task}: {n}" for task, n in result["items"].items())
    lines = [
        "# Evaluation: base vs fine-tuned vs RAG", "",
        f"Arms: {', '.join(result['arms'])}. Items: {items}. Values: mean [{level}% bootstrap interval, "
        f"{bootstrap['samples']} paired resamples of items, seed {bootstrap['seed']}]. ↑ higher is better, "
        "↓ lower is better.", "",
        _markdown(*comparison_table(result)), "",
        f"## Differences (* = the {level}% interval excludes zero)", "",
        _markdown(*difference_table(result)), "",
        *_gate_lines(result), "",
    ]
    if result.get("retrieval_modes"):
        lines += ["## Retrieval on the knowledge-injection questions (gold passage among the top k)", "",
                  _markdown(*retrieval_table(result)), ""]
    lines += ["## Notes", "", *(f"- {note}" for note in result["notes"]), *_count_lines(result)]
    if result.get("precision"):
        lines.append("- Precision: " + "; ".join(f"{model}: {label}" for model, label in result["precision"].items())
                     + " (evaluation.bf16_autocast).")
    return "\n".join(lines) + "\n"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
          "th{background:#f4f4f4}img{max-width:100%}.src{color:#555;font-size:90%}")


def html_report(result: dict[str, Any], plots: list[str]) -> str:
    level = round(result["bootstrap"]["confidence"] * 100)
    gate = "".join(f"<p>{html.escape(line.lstrip('- ').replace('**', ''))}</p>" for line in _gate_lines(result))
    notes = "".join(f"<li>{html.escape(n.lstrip('- '))}</li>" for n in [*result["notes"], *_count_lines(result)])
    images = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in plots)
    return (f"<!doctype html><html lang=pt><meta charset=utf-8><title>Evaluation</title><style>{_STYLE}</style>"
            f"<h1>Evaluation: base vs fine-tuned vs RAG</h1><p>mean [{level}% paired bootstrap interval]</p>"
            f"{_html_table(*comparison_table(result))}<h2>Differences</h2>{_html_table(*difference_table(result))}"
            f"<h2>Promotion gate</h2>{gate}<h2>Retrieval</h2>{_html_table(*retrieval_table(result))}"
            f"<h2>Notes</h2><ul>{notes}</ul><h2>Plots</h2>{images}"
            '<p><a href="examples.html">Examples: each arm\'s answers and sources</a></p></html>')


def write_plots(result: dict[str, Any], out_dir: Path) -> list[str]:
    """One figure per task: each metric by arm, point and interval. Returns paths relative to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in result["arms"] if a in result["metrics"]]
    written = []
    for task in ("lm", "probes", "qa", "lm_format"):
        metrics = [m for m in metric_names(result) if m.startswith(task + ".")]
        if not metrics:
            continue
        columns = min(3, len(metrics))
        rows = (len(metrics) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics, strict=False):
            present = [a for a in arms if metric in result["metrics"][a]]
            values = [result["metrics"][a][metric] for a in present]
            points = [v["value"] for v in values]
            errors = [[v["value"] - v["low"] for v in values], [v["high"] - v["value"] for v in values]]
            ax.errorbar(range(len(present)), points, yerr=errors, fmt="o", capsize=4)
            ax.set_xticks(range(len(present)), present, rotation=30, ha="right")
            ax.set_title(metric + (" (lower is better)" if lower_is_better(metric) else ""), fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        figure.suptitle(TASK_TITLES[task])
        figure.tight_layout()
        path = out_dir / "plots" / f"{task}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(str(path.relative_to(out_dir)))
    return written


def _sources_html(sources: list[dict[str, Any]]) -> str:
    return "".join(f'<div class=src>[{n}] <a href="{html.escape(s["url"])}">{html.escape(s["title"])}</a>'
                   f'{" — " + html.escape(s["section"]) if s.get("section") else ""}</div>'
                   for n, s in enumerate(sources, 1))


def _rows_by_item(rows_by_arm: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arm: [row]} -> {item id: {arm: row}}: one item's answers from every arm side by side."""
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, arm_rows in rows_by_arm.items():
        for row in arm_rows:
            by_item.setdefault(row["item_id"], {})[arm] = row
    return by_item


def examples_html(result: dict[str, Any], rows: dict[str, dict[str, list[dict[str, Any]]]], limit: int) -> str:
    arms = list(result["arms"])
    parts = [f"<!doctype html><html lang=pt><meta charset=utf-8><title>Examples</title><style>{_STYLE}</style>"
             "<h1>Examples</h1>"]
    qa = rows.get("qa", {})
    if qa:
        by_item = _rows_by_item(qa)
        parts.append("<h2>Knowledge-injection QA</h2>")
        for item_id in sorted(by_item)[:limit]:
            first = next(iter(by_item[item_id].values()))
            cells = "".join(
                f"<tr><td>{html.escape(arm)}</td><td>{html.escape(r.get('answer', '—'))}</td>"
                f"<td>{html.escape(r['mc_chosen'])} ({r['mc_correct']:.0f})</td>"
                f"<td>{'EM {:.0f}, F1 {:.2f}'.format(r['exact_match'], r['f1']) if 'f1' in r else '—'}</td>"
                f"<td>{_sources_html(r.get('sources', []))}</td></tr>"
                for arm in arms if (r := by_item[item_id].get(arm)) is not None)
            parts.append(f"<h3>{html.escape(first['question'])} ({first['half']})</h3><p>gold: "
                         f"{html.escape(' | '.join(first['golds']))}; choices: "
                         f"{html.escape(', '.join(first['choices']))}</p><table><tr><th>arm</th><th>answer</th>"
                         f"<th>choice (correct)</th><th>score</th><th>sources</th></tr>{cells}</table>")
    probes = rows.get("probes", {})
    if probes:
        by_item = _rows_by_item(probes)
        parts.append("<h2>Knowledge probes</h2>")
        for item_id in sorted(by_item)[:limit]:
            first = next(iter(by_item[item_id].values()))
            cells = "".join(
                f"<tr><td>{html.escape(arm)}</td><td>{html.escape(r['chosen'])}</td><td>{r['correct']:.0f}</td>"
                f"<td>{_sources_html(r.get('sources', []))}</td></tr>"
                for arm in arms if (r := by_item[item_id].get(arm)) is not None)
            parts.append(f"<h3>{html.escape(first['question'])}</h3><p>sentence: {html.escape(first['masked'])}"
                         f"</p><p>gold: {html.escape(first['gold'])} "
                         f"({first['kind']}, {first['group']}); candidates: "
                         f"{html.escape(', '.join(first['candidates']))}</p><table><tr><th>arm</th><th>chosen</th>"
                         f"<th>correct</th><th>sources</th></tr>{cells}</table>")
    parts.append("</html>")
    return "".join(parts)


def write_report(out_dir: Path, result: dict[str, Any], rows: dict[str, dict[str, list[dict[str, Any]]]],
                 examples: int) -> dict[str, Any]:
    plots = write_plots(result, out_dir)
    (out_dir / "report.md").write_text(markdown_report(result), encoding="utf-8")
    (out_dir / "report.html").write_text(html_report(result, plots), encoding="utf-8")
    (out_dir / "examples.html").write_text(examples_html(result, rows, examples), encoding="utf-8")
    return {"markdown": "report.md", "html": "report.html", "examples": "examples.html", "plots": plots}
