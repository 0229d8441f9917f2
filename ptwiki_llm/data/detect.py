"""Tell the input format from the bytes, not just the name, and refuse anything else clearly."""

from __future__ import annotations

import bz2
import gzip
import json
import tarfile
from pathlib import Path

from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError, UnknownFormatError
from ptwiki_llm.data.sources.base import Source
from ptwiki_llm.data.sources.extracted import ExtractedSource, is_jsonl, is_parquet


# Imported on use: each pulls in its own parser (lxml.html, lxml.etree).
def _enterprise_html(path: Path) -> Source:
    from ptwiki_llm.data.sources.enterprise_html import EnterpriseHtmlSource as cls

    return cls(path)


def _mediawiki_xml(path: Path) -> Source:
    from ptwiki_llm.data.sources.mediawiki_xml import MediaWikiXmlSource as cls

    return cls(path)


SUPPORTED = (
    "MediaWiki XML dump (*-pages-articles[-multistream].xml[.bz2]), "
    "Wikimedia Enterprise HTML snapshot (.tar.gz of NDJSON, or .ndjson), "
    "extracted articles (parquet or JSONL with id, url, title, text; a file or a folder of them)"
)


def _first_line(path: Path, limit: int = 16 * 1024 * 1024) -> bytes:
    """First non-blank line of the decompressed stream (bz2/gzip aware), at most ``limit`` bytes."""
    with path.open("rb") as raw:
        magic = raw.read(3)
    opener = bz2.open if magic.startswith(b"BZh") else gzip.open if magic[:2] == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            while True:
                line = handle.readline(limit)
                if not line or line.strip():
                    return line.strip()
    except (OSError, EOFError) as exc:
        kind = "bz2" if opener is bz2.open else "gzip" if opener is gzip.open else "file"
        raise CorruptInputError(
            path, f"truncated or corrupt {kind} file: not even its first line decompresses from its "
            f"{path.stat().st_size:,} bytes ({exc}); download or copy it again") from exc


def _json_keys(line: bytes) -> set[str]:
    try:
        value = json.loads(line)
    except ValueError:
        return set()
    return set(value) if isinstance(value, dict) else set()


def detect_source(path: Path) -> Source:
    """The source object for ``path``; raises UnknownFormatError/EmptyInputError otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if any(is_parquet(p) or is_jsonl(p) for p in files):
            return ExtractedSource(path)
        if any(p.name.endswith((".ndjson", ".ndjson.gz")) for p in files):
            return _enterprise_html(path)
        raise UnknownFormatError(path, f"folder holds no recognised input files. Supported: {SUPPORTED}")
    if path.stat().st_size == 0:
        raise EmptyInputError(path, "file is empty")

    with path.open("rb") as raw:
        magic = raw.read(4)
    if magic == b"PAR1":
        return ExtractedSource(path)
    if magic[:2] == b"\x1f\x8b":
        try:
            if tarfile.is_tarfile(path):
                return _enterprise_html(path)
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise CorruptInputError(path, f"truncated or corrupt gzip/tar file ({path.stat().st_size:,} bytes): {exc}; "
                                    "download or copy it again") from exc
    head = _first_line(path)
    if not head:
        raise EmptyInputError(path, "no content after decompression")
    if head.startswith((b"<mediawiki", b"<?xml")):
        return _mediawiki_xml(path)
    if head.startswith(b"{"):
        keys = _json_keys(head)
        if "article_body" in keys:
            return _enterprise_html(path)
        if {"id", "title", "text"} <= keys:
            return ExtractedSource(path)
        raise UnknownFormatError(
            path, f"JSON records with keys {sorted(keys)[:10]} match no known schema. Supported: {SUPPORTED}"
        )
    raise UnknownFormatError(path, f"unrecognised content starting with {_preview(head)}. Supported: {SUPPORTED}")


def _preview(head: bytes) -> str:
    """The first bytes as text if they are text, else as hex: binary garbage never reaches the terminal raw."""
    text = head[:40].decode("utf-8", "replace")
    if "\ufffd" in text or any(not ch.isprintable() for ch in text):
        return f"binary bytes {head[:16].hex(' ')}"
    return repr(text)
