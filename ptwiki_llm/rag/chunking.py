"""Articles to passages: along section boundaries, sized in the embedder's tokens, with overlap.

A chunk never spans two sections. Inside a section, chunks end at a paragraph or sentence
boundary when one falls in the second half of the window, else at a word start; the next chunk
starts ``overlap_tokens`` earlier (again snapped to a sentence or word start). Chunk text is a
slice of the original section text, so nothing is re-joined or re-spaced.

Ids are uuid5 of (article id, revision, position): re-chunking the same revision gives the same
ids, which is what makes indexing idempotent and resumable.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ptwiki_llm.config import ChunkingConfig

# Fixed namespace: changing it would change every chunk id (and re-embed every index).
CHUNK_NAMESPACE = uuid.UUID("6f0c7e0e-3d5b-5a3e-9a53-7074776b692d")

T = TypeVar("T")

# A sentence ends at . ! ? … (optionally followed by a closing quote/bracket) before whitespace.
_SENTENCE_END = re.compile(r"[.!?…][\"'”»)\]]*\s+|\n\s*")


def chunk_id(article_id: int, revision: int | None, position: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{article_id}:{revision if revision is not None else ''}:{position}"))


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    article_id: int
    revision: int | None
    title: str
    url: str
    section: str
    position: int
    text: str

    def embedding_text(self, with_heading: bool = True) -> str:
        """What the embedder sees: a 'title — section' line gives short passages their context."""
        if not with_heading:
            return self.text
        heading = f"{self.title} — {self.section}" if self.section else self.title
        return f"{heading}\n{self.text}" if heading else self.text

    def properties(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "title": self.title,
            "url": self.url,
            "section": self.section,
            "article_id": self.article_id,
            "revision": self.revision,
            "position": self.position,
        }


def text_fingerprint(text: str) -> bytes:
    """Identity of a passage for duplicate detection: whitespace-insensitive, case-sensitive."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class _Span:
    start: int  # token index, inclusive
    end: int  # token index, exclusive


class Chunker:
    """Splits article rows (the parquet schema of ``ptwiki_llm.data.article``) into :class:`Chunk` s."""

    def __init__(self, tokenizer: Any, cfg: ChunkingConfig) -> None:
        self.tokenizer = tokenizer
        self.cfg = cfg
        # Sections can be far longer than the model's window; we only want offsets here.
        self.tokenizer.model_max_length = 1 << 30
        self.short_dropped = 0  # pieces under min_chunk_chars (headings-only lists, stray symbols)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("chunking needs a fast tokenizer (character offsets)")

    def chunk_article(self, row: Mapping[str, Any]) -> list[Chunk]:
        """All chunks of one article, empty ones dropped; positions count every chunk produced."""
        sections = [(s.get("heading") or "", s.get("text") or "") for s in (row.get("sections") or [])]
        if not any(text.strip() for _, text in sections) and (row.get("text") or "").strip():
            sections = [("", row["text"])]  # an article without section structure
        sections = [(heading.strip(), text) for heading, text in sections if text.strip()]
        if not sections:
            return []
        encoded = self.tokenizer(
            [text for _, text in sections], add_special_tokens=False, return_offsets_mapping=True
        )["offset_mapping"]
        chunks: list[Chunk] = []
        position = 0
        article_id, revision = int(row["id"]), row.get("revision")
        for (heading, text), offsets in zip(sections, encoded, strict=True):
            for piece in self._split(text, offsets):
                if len(piece) < self.cfg.min_chunk_chars:
                    self.short_dropped += 1
                else:
                    chunks.append(Chunk(
                        id=chunk_id(article_id, revision, position), article_id=article_id, revision=revision,
                        title=row.get("title") or "", url=row.get("url") or "", section=heading,
                        position=position, text=piece,
                    ))
                position += 1  # dropped pieces keep their position: ids of the others never shift
        return chunks

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- one section ---------------------------------------------------------------------------

    def _split(self, text: str, offsets: list[tuple[int, int]]) -> Iterator[str]:
        n = len(offsets)
        if n == 0:
            return
        starts = [o[0] for o in offsets]
        word_starts = [i for i in range(n) if i == 0 or starts[i] > offsets[i - 1][1] or text[starts[i] - 1].isspace()]
        sentence_starts = sorted({bisect.bisect_left(starts, m.end()) for m in _SENTENCE_END.finditer(text)} - {n})
        for span in self._spans(n, word_starts, sentence_starts):
            piece = text[offsets[span.start][0] : offsets[span.end - 1][1]].strip()
            if piece:
                yield piece

    def _spans(self, n: int, word_starts: list[int], sentence_starts: list[int]) -> Iterator[_Span]:
        size, overlap = self.cfg.max_tokens, self.cfg.overlap_tokens
        start = 0
        while True:
            hard_end = start + size
            if hard_end >= n:
                yield _Span(start, n)
                return
            end = (_last_in(sentence_starts, start + size // 2, hard_end)
                   or _last_in(word_starts, start + size // 2, hard_end) or hard_end)
            yield _Span(start, end)
            if overlap == 0:
                start = end
                continue
            # Earliest sentence start inside the overlap window, else a word start, else the raw cut.
            lo = end - overlap
            nxt = (_first_in(sentence_starts, lo, end - 1) or _first_in(word_starts, lo, end - 1) or lo)
            start = max(nxt, start + 1)


def _last_in(sorted_values: list[int], lo: int, hi: int) -> int | None:
    """Largest value v with lo < v <= hi."""
    i = bisect.bisect_right(sorted_values, hi) - 1
    return sorted_values[i] if i >= 0 and sorted_values[i] > lo else None


def _first_in(sorted_values: list[int], lo: int, hi: int) -> int | None:
    """Smallest value v with lo <= v <= hi (and v > 0)."""
    i = bisect.bisect_left(sorted_values, max(lo, 1))
    return sorted_values[i] if i < len(sorted_values) and sorted_values[i] <= hi else None


@dataclass
class ChunkStats:
    articles: int = 0
    articles_without_chunks: int = 0
    chunks: int = 0
    duplicates_dropped: int = 0


def unique_chunks(rows: Iterable[Mapping[str, Any]], chunker: Chunker, stats: ChunkStats) -> Iterator[
        tuple[Mapping[str, Any], list[Chunk]]]:
    """Per article, its chunks minus any whose text already appeared (in this or an earlier article).

    First occurrence wins in input order, so a restarted run drops exactly the same chunks.
    """
    return drop_duplicates(((row, chunker.chunk_article(row)) for row in rows), stats)


def drop_duplicates(articles: Iterable[tuple[T, list[Chunk]]], stats: ChunkStats) -> Iterator[tuple[T, list[Chunk]]]:
    """``(key, chunks)`` per article, in input order, with the chunks whose text appeared before left out."""
    seen: set[bytes] = set()
    for key, chunks in articles:
        kept: list[Chunk] = []
        for chunk in chunks:
            fingerprint = text_fingerprint(chunk.text)
            if fingerprint in seen:
                stats.duplicates_dropped += 1
                continue
            seen.add(fingerprint)
            kept.append(chunk)
        stats.articles += 1
        stats.chunks += len(kept)
        if not kept:
            stats.articles_without_chunks += 1
        yield key, kept
