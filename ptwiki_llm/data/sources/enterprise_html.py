"""Wikimedia Enterprise HTML snapshots: a ``.tar.gz`` of NDJSON files, one article object per line.

Also reads a bare ``.ndjson`` / ``.ndjson.gz`` file or a folder of any of these. Reading only splits
lines (the reader is a single process); JSON parsing and HTML cleaning happen in ``convert``, which
runs in the workers.
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

from ptwiki_llm.data.article import Article, Skipped
from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError
from ptwiki_llm.data.html_clean import clean_html
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord, Source, page_url

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
# Members of an archive that hold articles; anything else (a README, checksums) is ignored.
MEMBER_SUFFIXES = (".ndjson", ".jsonl")

# What a damaged gzip/tar raises in the middle of a read, depending on where the damage is.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing runs of digits as numbers: ``x_2.ndjson`` before ``x_10.ndjson``.

    Snapshots number their parts, and archives are written in that order; a plain string sort would
    put part 10 before part 2 and force the gzip stream to rewind and decompress again.
    """
    return tuple((1, int(part)) if part.isdigit() else (0, part) for part in _DIGITS.split(name) if part)


def _is_tar(path: Path) -> bool:
    if path.name.endswith(TAR_SUFFIXES):
        return True
    if path.name.endswith(NDJSON_SUFFIXES):
        return False
    # An unusual name: let the bytes decide (a gzip of plain NDJSON is not a tar).
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        return False


def _is_member(info: tarfile.TarInfo) -> bool:
    base = info.name.rsplit("/", 1)[-1]
    # "._name" are macOS resource forks that tar copies along; they are binary, not NDJSON.
    return info.isfile() and base.endswith(MEMBER_SUFFIXES) and not base.startswith("._")


class EnterpriseHtmlSource(Source):
    kind: ClassVar[str] = "enterprise_html"

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = [p for p in self.path.rglob("*") if p.is_file() and p.name.endswith(TAR_SUFFIXES + NDJSON_SUFFIXES)]
            if not found:
                raise EmptyInputError(self.path, "folder holds no .tar.gz or .ndjson files")
            return sorted(found, key=lambda p: natural_key(str(p.relative_to(self.path))))
        return [self.path]

    def records(self) -> Iterator[RawRecord]:
        produced = 0
        for path in self.files():
            reader = self._tar_records if _is_tar(path) else self._ndjson_records
            for record in reader(path):
                produced += 1
                yield record
        if produced == 0:
            raise EmptyInputError(
                self.path, "no NDJSON records: no .ndjson members in the archive, or only blank lines"
            )

    @staticmethod
    def _tar_records(path: Path) -> Iterator[RawRecord]:
        """Members in natural name order, each streamed line by line.

        Sorting needs the member list first, so the archive is indexed in one decompressing pass
        (headers only are kept) and then read. With members stored in name order, which is how
        snapshots are written, the second pass only ever seeks forward. The index pass also means a
        truncated archive fails before its first record is handed out.
        """
        with _open_tar(path) as tar:
            members: list[tarfile.TarInfo] = []
            last = "archive start"
            try:
                while (info := tar.next()) is not None:
                    last = f"{info.name} (archive index)"
                    if _is_member(info):
                        members.append(info)
                last = "end of archive (checksum)"
                # Reading on to the end of the stream makes gzip verify its CRC: damage that still
                # inflates (a run of zeroed bytes) is caught here, before any record is handed out.
                if tar.fileobj is not None:
                    while tar.fileobj.read(1 << 20):
                        pass
            except _READ_ERRORS as exc:
                raise CorruptInputError(path, f"truncated or corrupt gzip/tar: {exc}", last) from exc
            # No member here is not an error by itself: a folder may hold other archives. records()
            # raises if nothing at all was read.
            members.sort(key=lambda info: natural_key(info.name))
            for info in members:
                handle = tar.extractfile(info)
                if handle is None:  # not reachable for regular files; keeps the type checker honest
                    continue
                yield from _stream_lines(path, handle, info.name)

    @staticmethod
    def _ndjson_records(path: Path) -> Iterator[RawRecord]:
        with path.open("rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            yield from _stream_lines(path, handle, path.name)

    @staticmethod
    def convert(record: RawRecord, options: ConvertOptions) -> Article | Skipped:
        position = record.position
        try:
            data: Any = json.loads(record.payload)
        except ValueError as exc:  # includes UnicodeDecodeError
            return Skipped("malformed_record", position, detail=f"invalid JSON: {exc}")
        if not isinstance(data, dict):
            return Skipped("malformed_record", position, detail="line is not a JSON object")

        title = data.get("name")
        title = title if isinstance(title, str) else ""
        page_id = _as_int(data.get("identifier"))
        body = data.get("article_body")
        html = body.get("html") if isinstance(body, dict) else None
        if page_id is None or not title or not isinstance(html, str):
            missing = [
                field
                for field, present in (
                    ("identifier", page_id is not None),
                    ("name", bool(title)),
                    ("article_body.html", isinstance(html, str)),
                )
                if not present
            ]
            return Skipped("malformed_record", position, page_id, title, f"missing or invalid: {', '.join(missing)}")

        namespace = data.get("namespace")
        ns = _as_int(namespace.get("identifier")) if isinstance(namespace, dict) else None
        if ns is not None and ns != 0:
            return Skipped("not_namespace_0", position, page_id, title, f"namespace {ns}")

        raw_html = html.encode("utf-8", "replace")
        if len(raw_html) > options.max_article_bytes:
            return Skipped("too_large", position, page_id, title, f"{len(raw_html)} bytes of HTML")

        version = data.get("version")
        revision = _as_int(version.get("identifier")) if isinstance(version, dict) else None
        url = data.get("url")
        article = Article(
            id=page_id,
            revision=revision,
            title=title,
            url=url if isinstance(url, str) and url else page_url(options.wiki_base_url, title),
            sections=clean_html(raw_html),
            source=EnterpriseHtmlSource.kind,
        )
        if len(article.text) < options.min_text_chars:
            return Skipped("empty", position, page_id, title, f"{len(article.text)} characters after cleaning")
        return article


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # not a damaged archive; the caller's message is clearer as is
    except _READ_ERRORS as exc:
        raise CorruptInputError(path, f"truncated or corrupt gzip/tar: {exc}", "archive start") from exc


def _stream_lines(path: Path, handle: IO[bytes], name: str) -> Iterator[RawRecord]:
    line_no = 0
    try:
        for line_no, line in enumerate(handle, start=1):
            if not line.isspace():
                yield RawRecord(position=f"{name}:line {line_no}", payload=line)
    except _READ_ERRORS as exc:
        # The line that failed is the one after the last complete line read.
        raise CorruptInputError(path, f"truncated or corrupt gzip/tar: {exc}", f"{name}:line {line_no + 1}") from exc


def _as_int(value: object) -> int | None:
    # bool is an int subclass; JSON true is not a page id.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
