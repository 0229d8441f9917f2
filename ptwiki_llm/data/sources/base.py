"""What every input format provides to the ingest engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ptwiki_llm.data.article import Article, Skipped


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """Everything a worker needs to turn a raw record into an article (picklable)."""

    wiki_base_url: str = "https://pt.wikipedia.org/wiki/"
    max_article_bytes: int = 4_000_000
    min_text_chars: int = 1


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: ``position`` says where it came from (file, line or page number)."""

    position: str
    payload: Any


class Source(ABC):
    """A corpus in one format.

    ``records`` streams raw records in file order and raises an ``IngestError`` naming the file and
    position when the input itself is broken (truncated compression, malformed XML). ``convert`` is
    a pure function of one raw record, run in worker processes; a bad *record* becomes a
    ``Skipped`` with a reason rather than an exception, so one bad page never stops a dump.
    """

    kind: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @abstractmethod
    def files(self) -> list[Path]:
        """The input files, in read order (for the manifest)."""

    @abstractmethod
    def records(self) -> Iterator[RawRecord]:
        """Raw records in deterministic order, streamed."""

    @staticmethod
    @abstractmethod
    def convert(record: RawRecord, options: ConvertOptions) -> Article | Skipped:
        """Raw record to a cleaned article, or the reason it is skipped."""


def page_url(base_url: str, title: str) -> str:
    """Wiki URL of a title the way MediaWiki writes it (spaces as underscores)."""
    from urllib.parse import quote

    return base_url + quote(title.replace(" ", "_"), safe="/:(),'!*;@$&=+-._~")
