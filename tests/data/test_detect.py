from __future__ import annotations

import bz2
import gzip
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptwiki_llm.data.detect import detect_source
from ptwiki_llm.data.errors import EmptyInputError, UnknownFormatError

XML = b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><page><title>A</title></page></mediawiki>'
ENTERPRISE = json.dumps({"name": "A", "identifier": 1, "article_body": {"html": "<p>x</p>"}}).encode() + b"\n"
EXTRACTED = json.dumps({"id": "1", "url": "u", "title": "A", "text": "x"}).encode() + b"\n"


def _tar_gz(path, member: str, payload: bytes) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize(
    ("name", "writer", "kind"),
    [
        ("ptwiki-pages-articles.xml", lambda p: p.write_bytes(XML), "mediawiki_xml"),
        ("ptwiki-pages-articles-multistream.xml.bz2", lambda p: p.write_bytes(bz2.compress(XML)), "mediawiki_xml"),
        ("dump.bin", lambda p: p.write_bytes(bz2.compress(XML)), "mediawiki_xml"),  # content, not the name
        ("snapshot.tar.gz", lambda p: _tar_gz(p, "x_0.ndjson", ENTERPRISE), "enterprise_html"),
        ("snapshot.ndjson", lambda p: p.write_bytes(ENTERPRISE), "enterprise_html"),
        ("articles.jsonl", lambda p: p.write_bytes(EXTRACTED), "extracted"),
        ("articles.jsonl.gz", lambda p: p.write_bytes(gzip.compress(EXTRACTED)), "extracted"),
        ("train.parquet", lambda p: pq.write_table(pa.table({"id": ["1"], "title": ["A"], "text": ["x"]}), p),
         "extracted"),
    ],
)
def test_detects_each_format(tmp_path, name, writer, kind):
    path = tmp_path / name
    writer(path)
    assert detect_source(path).kind == kind


def test_folder_of_parquet_is_extracted(tmp_path):
    pq.write_table(pa.table({"id": ["1"], "title": ["A"], "text": ["x"]}), tmp_path / "train-0.parquet")
    assert detect_source(tmp_path).kind == "extracted"


def test_unknown_format_names_file_and_lists_supported(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world")
    with pytest.raises(UnknownFormatError, match=r"notes\.txt.*Supported: MediaWiki XML"):
        detect_source(path)


def test_json_with_unknown_schema(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"foo": 1}\n')
    with pytest.raises(UnknownFormatError, match="match no known schema"):
        detect_source(path)


def test_empty_file_and_empty_compressed_file(tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(EmptyInputError, match="empty"):
        detect_source(empty)
    empty_bz2 = tmp_path / "empty.xml.bz2"
    empty_bz2.write_bytes(bz2.compress(b""))
    with pytest.raises(EmptyInputError):
        detect_source(empty_bz2)


def test_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        detect_source(tmp_path / "nope.xml")
