"""Format: validated articles -> train/eval JSONL with one ``text`` field per line.

``instruction`` mode writes Alpaca-style examples in Portuguese, several kinds per article;
``completion`` mode writes raw article text for continued pre-training. The split is a pure function
of the page id, so an article never lands in both files, whatever the seed or the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from ptwiki_llm.artifacts import StepArtifact
from ptwiki_llm.config import FormatConfig
from ptwiki_llm.data.ingest import iter_articles
from ptwiki_llm.progress import progress_bar
from ptwiki_llm.provenance import sha256_file

PROMPT_WITH_INPUT = (
    "Abaixo está uma instrução que descreve uma tarefa, juntamente com uma entrada que fornece mais "
    "contexto. Escreva uma resposta que complete adequadamente o pedido.\n\n"
    "### Instrução:\n{instruction}\n\n### Entrada:\n{input}\n\n### Resposta:\n"
)
PROMPT_NO_INPUT = (
    "Abaixo está uma instrução que descreve uma tarefa. Escreva uma resposta que complete adequadamente "
    "o pedido.\n\n### Instrução:\n{instruction}\n\n### Resposta:\n"
)

# Several phrasings per kind, so the model learns the task rather than one sentence.
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "explain": (
        "Explique o que é {title}.",
        "O que você sabe sobre {title}?",
        "Escreva um parágrafo introdutório sobre {title}.",
        "Apresente {title} de forma resumida.",
    ),
    "section": (
        "Descreva {heading} no contexto de {title}.",
        "Escreva a seção \"{heading}\" de um artigo enciclopédico sobre {title}.",
        "O que se pode dizer sobre {heading} em relação a {title}?",
    ),
    "summarize": (
        "Resuma o texto a seguir em um parágrafo.",
        "Escreva um resumo do seguinte artigo.",
        "Faça uma síntese do texto abaixo.",
    ),
    "title": (
        "Qual é o título do artigo da Wikipédia que começa com o texto a seguir?",
        "Dê um título para o seguinte texto enciclopédico.",
    ),
}

_SENTENCE_END = re.compile(r"[.!?…](?=\s)")


@dataclass(frozen=True, slots=True)
class Example:
    article_id: int
    kind: str
    text: str


def eval_bucket(page_id: int) -> float:
    """A number in [0, 1) fixed by the page id alone."""
    digest = hashlib.sha256(f"ptwiki-split:{page_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_eval(page_id: int, eval_fraction: float) -> bool:
    return eval_bucket(page_id) < eval_fraction


def _pick(options: tuple[str, ...], page_id: int, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}:{page_id}".encode()).digest()
    return options[digest[0] % len(options)]


def truncate_at_sentence(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending at the last sentence end when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] > limit // 2:
        return head[: ends[-1]].rstrip()
    return head.rsplit(" ", 1)[0].rstrip() + " …"


def render(instruction: str, output: str, input_text: str = "") -> str:
    template = PROMPT_WITH_INPUT if input_text else PROMPT_NO_INPUT
    return template.format(instruction=instruction, input=input_text) + output


def instruction_examples(article: dict[str, Any], cfg: FormatConfig) -> list[Example]:
    page_id, title = article["id"], article["title"]
    sections = article["sections"] or []
    lead = next((s["text"] for s in sections if not s["heading"]), "")
    body = [s for s in sections if s["heading"] and len(s["text"]) >= cfg.min_section_chars]
    limit = cfg.max_example_chars
    examples: list[Example] = []
    if len(lead) >= cfg.min_section_chars:
        instruction = _pick(INSTRUCTIONS["explain"], page_id, "explain").format(title=title)
        examples.append(Example(page_id, "explain", render(instruction, truncate_at_sentence(lead, limit))))
        instruction = _pick(INSTRUCTIONS["title"], page_id, "title")
        examples.append(
            Example(page_id, "title", render(instruction, title, truncate_at_sentence(lead, limit // 2)))
        )
    for section in body[: cfg.max_sections_per_article]:
        template = _pick(INSTRUCTIONS["section"], page_id, "section:" + section["heading"])
        instruction = template.format(heading=section["heading"], title=title)
        output = truncate_at_sentence(section["text"], limit)
        examples.append(Example(page_id, "section", render(instruction, output)))
    if len(lead) >= cfg.min_section_chars and body:
        rest = "\n\n".join(f"{s['heading']}\n\n{s['text']}" for s in body)
        instruction = _pick(INSTRUCTIONS["summarize"], page_id, "summarize")
        text = render(instruction, truncate_at_sentence(lead, limit // 3), truncate_at_sentence(rest, limit))
        examples.append(Example(page_id, "summarize", text))
    return examples


def completion_examples(article: dict[str, Any], cfg: FormatConfig) -> list[Example]:
    """Title and text, cut into chunks at paragraph boundaries."""
    paragraphs = [p for p in f"{article['title']}\n\n{article['text']}".split("\n\n") if p.strip()]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in paragraphs:
        paragraph = truncate_at_sentence(paragraph, cfg.completion_chunk_chars)
        if current and size + len(paragraph) > cfg.completion_chunk_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(paragraph)
        size += len(paragraph) + 2
    if current:
        chunks.append("\n\n".join(current))
    return [Example(article["id"], "completion", chunk) for chunk in chunks]


@dataclass(frozen=True)
class FormatResult:
    out_dir: Path
    summary: dict[str, Any]

    @property
    def train_path(self) -> Path:
        return self.out_dir / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.out_dir / "eval.jsonl"

    @property
    def eval_raw_path(self) -> Path:
        """The eval split's articles as cleaned text, no template: what language-model scores are measured on."""
        return self.out_dir / "eval_raw.jsonl"


class FileDigest(StepArtifact):
    """A file the format step wrote: its name in the folder and content hash."""

    path: str
    sha256: str
    bytes: int | None = None


class ExampleCounts(StepArtifact):
    train: int
    eval: int


class FormattedData(StepArtifact):
    """The format step's output: the JSONL splits (paths), their hashes and the counts of summary.json."""

    dir: str
    train: str
    eval: str | None = None
    eval_raw: str | None = None
    """The eval split's articles as cleaned text (no template): what language-model scores are measured on."""
    knowledge: str | None = None
    """The knowledge-injection manifest (knowledge.json), None when data.knowledge.file is off."""
    knowledge_train: str | None = None
    dataset_sha256: str | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict)
    """By split: train, eval, eval_raw, and knowledge_train when knowledge injection is on."""
    example_count: ExampleCounts | None = None
    articles: dict[str, int] = Field(default_factory=dict)
    estimated_tokens: int | None = None

    def sha256(self, split: str) -> str | None:
        digest = self.files.get(split)
        return digest.sha256 if digest else None

    @classmethod
    def from_summary(cls, folder: Path, summary: dict[str, Any], **fields: Any) -> FormattedData:
        """The output for ``folder`` and the summary.json document it holds; ``fields`` override what is read."""
        optional = {name: str(folder / file) if (folder / file).is_file() else None
                    for name, file in (("eval_raw", "eval_raw.jsonl"), ("knowledge", "knowledge.json"),
                                       ("knowledge_train", "knowledge_train.jsonl"))}
        read = {"dir": str(folder), "train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl"),
                **optional, "files": summary.get("files", {}), "example_count": summary.get("example_count"),
                "articles": summary.get("articles", {}), "dataset_sha256": summary.get("dataset_sha256"),
                "estimated_tokens": summary.get("tokens", {}).get("estimated_total_tokens")}
        return cls(**{**read, **fields})

    @classmethod
    def from_folder(cls, folder: Path) -> FormattedData:
        """The output for a folder the format step wrote, outside the pipeline (``python -m ptwiki_llm.training``)."""
        summary_path = folder / "summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        return cls.from_summary(folder, summary)


def format_articles(
    shards: list[Path],
    out_dir: Path,
    cfg: FormatConfig,
    exclude_ids: set[int] | None = None,
    tokenize: Callable[[list[str]], list[int]] | None = None,
    total_articles: int | None = None,
    show_progress: bool = True,
) -> FormatResult:
    """Write ``train.jsonl``, ``eval.jsonl`` and ``summary.json`` into ``out_dir``.

    ``tokenize`` maps a batch of texts to their token counts (the configured tokenizer); it is
    applied to an evenly spaced sample of ``cfg.token_stats_sample`` examples (all when 0).
    """
    exclude_ids = exclude_ids or set()
    make = instruction_examples if cfg.mode == "instruction" else completion_examples
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    counts: dict[str, Counter[str]] = {"train": Counter(), "eval": Counter()}
    articles = {"train": 0, "eval": 0, "without_examples": 0}
    chars: list[int] = []
    texts_for_tokens: list[str] = []
    handles = {split: (staging / f"{split}.jsonl").open("w", encoding="utf-8")
               for split in ("train", "eval", "eval_raw")}
    try:
        with progress_bar(f"format ({cfg.mode})", total=total_articles, enabled=show_progress) as advance:
            for article in iter_articles(shards, exclude_ids):
                advance(1)
                examples = make(article, cfg)
                if not examples:
                    articles["without_examples"] += 1
                    continue
                split = "eval" if is_eval(article["id"], cfg.eval_fraction) else "train"
                articles[split] += 1
                if split == "eval":
                    raw = {"id": article["id"], "title": article["title"], "text": article["text"]}
                    handles["eval_raw"].write(json.dumps(raw, ensure_ascii=False) + "\n")
                for example in examples:
                    handles[split].write(json.dumps({"text": example.text}, ensure_ascii=False) + "\n")
                    counts[split][example.kind] += 1
                    chars.append(len(example.text))
                    texts_for_tokens.append(example.text)
    finally:
        for handle in handles.values():
            handle.close()

    summary: dict[str, Any] = {
        "mode": cfg.mode,
        "eval_fraction": cfg.eval_fraction,
        "articles": articles,
        "excluded_quarantined": len(exclude_ids),
        "examples": {split: dict(sorted(c.items())) for split, c in counts.items()},
        "example_count": {split: sum(c.values()) for split, c in counts.items()},
        "chars": _describe(chars),
        "files": {},
    }
    if tokenize is not None and texts_for_tokens:
        sample = _even_sample(texts_for_tokens, cfg.token_stats_sample)
        token_counts: list[int] = []
        for start in range(0, len(sample), 256):
            token_counts.extend(tokenize(sample[start : start + 256]))
        stats = _describe(token_counts)
        stats["sampled_examples"] = len(sample)
        total_chars = sum(len(t) for t in sample)
        stats["chars_per_token"] = round(total_chars / max(1, sum(token_counts)), 3)
        stats["estimated_total_tokens"] = round(sum(chars) / stats["chars_per_token"])
        summary["tokens"] = stats
    for split in ("train", "eval", "eval_raw"):
        path = staging / f"{split}.jsonl"
        summary["files"][split] = {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    (staging / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return FormatResult(out_dir=out_dir, summary=summary)


def _even_sample(items: list[str], size: int) -> list[str]:
    if size <= 0 or len(items) <= size:
        return items
    step = len(items) / size
    return [items[int(i * step)] for i in range(size)]


def _describe(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(values),
        "total": sum(values),
        "mean": round(statistics.fmean(values), 1),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
    }
