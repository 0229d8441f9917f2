"""Already-extracted articles: Hugging Face ``wikimedia/wikipedia`` parquet or JSONL (id, url, title, text)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq

from ptwiki_llm.data.article import Article, Section, Skipped
from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord, Source, page_url

# The HF dumps keep section titles as lines; these end an article the same way as in the other sources.
TRAILING_HEADINGS = frozenset(
    {
        "ver também",
        "referências",
        "referencias",
        "notas",
        "notas e referências",
        "ligações externas",
        "ligacoes externas",
        "bibliografia",
        "fontes",
        "leitura adicional",
    }
)

PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".json")


def is_parquet(path: Path) -> bool:
    return path.name.endswith(PARQUET_SUFFIXES)


def is_jsonl(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES)


class ExtractedSource(Source):
    kind: ClassVar[str] = "extracted"

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(p for p in self.path.rglob("*") if p.is_file() and (is_parquet(p) or is_jsonl(p)))
            if not found:
                raise EmptyInputError(self.path, "folder holds no .parquet or .jsonl files")
            return found
        return [self.path]

    def records(self) -> Iterator[RawRecord]:
        produced = 0
        for path in self.files():
            reader = self._parquet_records if is_parquet(path) else self._jsonl_records
            for record in reader(path):
                produced += 1
                yield record
        if produced == 0:
            raise EmptyInputError(self.path, "no articles")

    @staticmethod
    def _parquet_records(path: Path) -> Iterator[RawRecord]:
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a broken footer
            raise CorruptInputError(path, f"not a readable parquet file: {exc}") from exc
        missing = {"id", "title", "text"} - set(parquet.schema_arrow.names)
        if missing:
            raise CorruptInputError(path, f"parquet lacks columns {sorted(missing)}")
        columns = [c for c in ("id", "url", "title", "text") if c in parquet.schema_arrow.names]
        row = 0
        for group in range(parquet.num_row_groups):
            try:
                table = parquet.read_row_group(group, columns=columns)
            except Exception as exc:
                raise CorruptInputError(path, f"unreadable row group: {exc}", f"row group {group}") from exc
            for item in table.to_pylist():
                yield RawRecord(position=f"{path.name}:row {row}", payload=item)
                row += 1

    @staticmethod
    def _jsonl_records(path: Path) -> Iterator[RawRecord]:
        opener = gzip.open if path.name.endswith(".gz") else open
        line_no = 0
        try:
            with opener(path, "rb") as handle:
                for line_no, line in enumerate(handle, start=1):
                    if line.strip():
                        yield RawRecord(position=f"{path.name}:line {line_no}", payload=line)
        except (OSError, EOFError) as exc:
            raise CorruptInputError(path, f"truncated or corrupt file: {exc}", f"line {line_no}") from exc

    @staticmethod
    def convert(record: RawRecord, options: ConvertOptions) -> Article | Skipped:
        payload: Any = record.payload
        if isinstance(payload, bytes):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                return Skipped("malformed_record", record.position, detail=str(exc))
        if not isinstance(payload, dict):
            return Skipped("malformed_record", record.position, detail="not a JSON object")
        title = payload.get("title")
        text = payload.get("text")
        try:
            page_id = int(payload.get("id"))
        except (TypeError, ValueError):
            return Skipped("malformed_record", record.position, title=str(title or ""), detail="id is not an integer")
        if not isinstance(title, str) or not isinstance(text, str):
            return Skipped("malformed_record", record.position, page_id, str(title or ""), "title/text missing")
        if len(text.encode("utf-8")) > options.max_article_bytes:
            return Skipped("too_large", record.position, page_id, title)
        sections = split_plain_sections(text)
        article = Article(
            id=page_id,
            revision=None,
            title=title,
            url=payload.get("url") or page_url(options.wiki_base_url, title),
            sections=sections,
            source=ExtractedSource.kind,
        )
        if len(article.text) < options.min_text_chars:
            return Skipped("empty", record.position, page_id, title)
        return article


def split_plain_sections(text: str) -> list[Section]:
    """Paragraphs of extracted text; a trailing heading (References, ...) ends the article."""
    paragraphs: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n"):
        line = " ".join(block.split())
        if not line:
            continue
        if line.lower().rstrip(".:") in TRAILING_HEADINGS:
            break
        paragraphs.append(line)
    body = "\n\n".join(paragraphs)
    return [Section(heading="", level=1, text=body)] if body else []
