"""The record every source produces, and its parquet schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(slots=True)
class Section:
    """One section of an article; the lead section has heading "" and level 1."""

    heading: str
    level: int
    text: str


@dataclass(slots=True)
class Article:
    id: int
    revision: int | None
    title: str
    url: str
    sections: list[Section]
    source: str
    text: str = field(default="")

    def __post_init__(self) -> None:
        if not self.text:
            self.text = render_text(self.sections)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "title": self.title,
            "url": self.url,
            "text": self.text,
            "sections": [{"heading": s.heading, "level": s.level, "text": s.text} for s in self.sections],
            "source": self.source,
        }


@dataclass(slots=True)
class Skipped:
    """A record that was read but not kept, with the reason (counted in the manifest)."""

    reason: str
    position: str
    id: int | None = None
    title: str = ""
    detail: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "reason": self.reason,
            "position": self.position,
            "detail": self.detail[:500],
        }


def render_text(sections: list[Section]) -> str:
    """Plain text of an article: headings on their own line, paragraphs separated by blank lines."""
    parts: list[str] = []
    for section in sections:
        if section.heading:
            parts.append(section.heading)
        if section.text:
            parts.append(section.text)
    return "\n\n".join(parts)


SECTION_TYPE = pa.struct([("heading", pa.string()), ("level", pa.int8()), ("text", pa.string())])

ARTICLE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("revision", pa.int64()),
        ("title", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("sections", pa.list_(SECTION_TYPE)),
        ("source", pa.string()),
    ]
)

SKIPPED_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("title", pa.string()),
        ("reason", pa.string()),
        ("position", pa.string()),
        ("detail", pa.string()),
    ]
)
