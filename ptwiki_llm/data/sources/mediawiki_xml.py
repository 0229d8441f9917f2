"""MediaWiki XML export (``pages-articles[-multistream].xml[.bz2]``) as a source."""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from ptwiki_llm.data.article import Article, Skipped
from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord, Source, page_url
from ptwiki_llm.data.wikitext import clean_wikitext

__all__ = ["MediaWikiXmlSource", "PagePayload"]

# (ns, page_id, revision_id, title, is_redirect, wikitext): a plain tuple pickles cheaply to
# the conversion workers.
PagePayload = tuple[int, int, int | None, str, bool, str]

_BZ2_MAGIC = b"BZh"
# Leading whitespace is allowed by MediaWiki's own redirect parser; the Portuguese and English
# magic words are both accepted on ptwiki.
_REDIRECT_RE = re.compile(r"\s*#(?:REDIREC?CIONAMENTO|REDIRECT)\b", re.I)


class _ShortReads:
    """Hands lxml whatever one decompression step produced instead of a full buffer.

    lxml asks for 32 KiB at a time; a buffered ``read(n)`` that hits a truncated stream part-way
    raises and throws away the bytes it had already decoded, so the pages just before the cut
    would be lost and the error's "after page N" would be too early.
    """

    def __init__(self, stream: bz2.BZ2File) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read1(size if size > 0 else 1 << 16)


def _local(tag: object) -> str:
    # The export namespace changes with the dump version (export-0.10, 0.11...), so children
    # are matched on their local name only.
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


class MediaWikiXmlSource(Source):
    """A MediaWiki XML dump, plain or bz2 (single or multistream), streamed page by page."""

    kind = "mediawiki_xml"

    def files(self) -> list[Path]:
        return [self.path]

    def _open(self) -> BinaryIO:
        with self.path.open("rb") as probe:
            magic = probe.read(3)
        # Decided by content, not name: a renamed or re-downloaded file keeps its compression.
        if magic == _BZ2_MAGIC:
            # BZ2File reads every stream of a multistream file in turn.
            return bz2.BZ2File(self.path, "rb")
        return self.path.open("rb")

    def records(self) -> Iterator[RawRecord]:
        if self.path.stat().st_size == 0:
            # lxml would call a zero-byte file malformed; it is empty, which is a different fix.
            raise EmptyInputError(self.path, "empty file, no <page> elements")
        pages = 0
        with self._open() as stream:
            compressed = isinstance(stream, bz2.BZ2File)
            # huge_tree: a single page's text can pass libxml2's 10 MB text-node limit.
            # resolve_entities=False: dumps never define entities, so a file that does is not
            # allowed to pull in local files (XXE) or expand entity bombs.
            parser = etree.iterparse(
                _ShortReads(stream) if compressed else stream,
                events=("end",),
                tag="{*}page",
                huge_tree=True,
                resolve_entities=False,
            )
            try:
                for _event, page in parser:
                    pages += 1
                    position = f"page {pages} (line {page.sourceline})"
                    try:
                        payload = _page_payload(page)
                    except ValueError as exc:
                        # A non-numeric <ns> or <id> means the dump itself is damaged.
                        raise CorruptInputError(self.path, f"bad page header: {exc}", position) from exc
                    # The tree would otherwise keep every page read so far: clear this one and
                    # drop the emptied siblings before it, so memory stays flat over the dump.
                    page.clear(keep_tail=False)
                    parent = page.getparent()
                    if parent is not None:
                        while page.getprevious() is not None:
                            del parent[0]
                    yield RawRecord(position=position, payload=payload)
            except etree.XMLSyntaxError as exc:
                line = exc.position[0] if exc.position else exc.lineno
                raise CorruptInputError(
                    self.path, f"malformed XML (after page {pages}): {exc.msg}", position=f"line {line}"
                ) from exc
            except (EOFError, OSError) as exc:
                # BZ2File raises EOFError for a cut-off stream and OSError for corrupt data.
                what = "truncated or corrupt bz2 stream" if compressed else "read error"
                raise CorruptInputError(self.path, f"{what}: {exc}", position=f"after page {pages}") from exc
        if pages == 0:
            raise EmptyInputError(self.path, "no <page> elements")

    @staticmethod
    def convert(record: RawRecord, options: ConvertOptions) -> Article | Skipped:
        ns, page_id, revision_id, title, is_redirect, text = record.payload
        position = record.position
        if ns != 0:
            return Skipped("not_namespace_0", position, page_id, title, detail=f"ns={ns}")
        if is_redirect or _REDIRECT_RE.match(text):
            return Skipped("redirect", position, page_id, title)
        # UTF-8 takes at most 4 bytes a character: only encode when the limit could be crossed.
        if len(text) * 4 > options.max_article_bytes:
            size = len(text.encode("utf-8"))
            if size > options.max_article_bytes:
                return Skipped(
                    "too_large",
                    position,
                    page_id,
                    title,
                    detail=f"{size} bytes > {options.max_article_bytes}",
                )
        sections = clean_wikitext(text)
        if sum(len(section.text) for section in sections) < options.min_text_chars:
            return Skipped("empty", position, page_id, title, detail=f"{len(text)} chars of wikitext")
        return Article(
            id=page_id,
            revision=revision_id,
            title=title,
            url=page_url(options.wiki_base_url, title),
            sections=sections,
            source=MediaWikiXmlSource.kind,
        )


def _page_payload(page: etree._Element) -> PagePayload:
    title = ""
    ns = 0
    page_id = 0
    is_redirect = False
    revision: etree._Element | None = None
    for child in page:
        name = _local(child.tag)
        if name == "title":
            title = child.text or ""
        elif name == "ns":
            ns = int(child.text or 0)
        elif name == "id":
            page_id = int(child.text or 0)
        elif name == "redirect":
            is_redirect = True
        elif name == "revision":
            # A full-history dump has several revisions in order; the last one is current.
            revision = child
    revision_id: int | None = None
    text = ""
    if revision is not None:
        for child in revision:
            name = _local(child.tag)
            if name == "id":
                revision_id = int(child.text) if child.text else None
            elif name == "text":
                text = child.text or ""
    return (ns, page_id, revision_id, title, is_redirect, text)
