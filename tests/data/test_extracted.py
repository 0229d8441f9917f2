from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.data.article import Article, Skipped
from ptwiki_llm.data.sources.base import ConvertOptions
from ptwiki_llm.data.sources.extracted import ExtractedSource, split_plain_sections

OPTIONS = ConvertOptions()


def _convert_all(source):
    return [source.convert(record, OPTIONS) for record in source.records()]


def test_jsonl_records_and_bad_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [
        json.dumps({"id": "12", "url": "https://pt.wikipedia.org/wiki/Lisboa", "title": "Lisboa",
                    "text": "Lisboa é a capital de Portugal.\n\nReferências\n\nFonte 1"}),
        "{not json",
        json.dumps({"id": "abc", "title": "X", "text": "y"}),
        json.dumps({"id": 13, "title": "Porto", "text": "O Porto é uma cidade."}),
    ]
    path.write_text("\n".join(lines) + "\n")
    results = _convert_all(ExtractedSource(path))
    assert isinstance(results[0], Article) and results[0].id == 12
    assert results[0].text == "Lisboa é a capital de Portugal."  # trailing "Referências" cut
    assert isinstance(results[1], Skipped) and results[1].reason == "malformed_record"
    assert results[1].position == "a.jsonl:line 2"
    assert isinstance(results[2], Skipped) and results[2].reason == "malformed_record"
    assert results[3].url == "https://pt.wikipedia.org/wiki/Porto"


def test_parquet_folder_in_name_order(tmp_path):
    for name, ids in (("b.parquet", [3]), ("a.parquet", [1, 2])):
        table = pa.table({"id": [str(i) for i in ids], "url": ["u"] * len(ids),
                          "title": [f"T{i}" for i in ids], "text": [f"texto {i}" for i in ids]})
        pq.write_table(table, tmp_path / name)
    results = _convert_all(ExtractedSource(tmp_path))
    assert [r.id for r in results] == [1, 2, 3]


def test_split_plain_sections_normalises_whitespace():
    sections = split_plain_sections("  Um   dois \n\n\n três\nVer também\nOutro")
    assert [s.text for s in sections] == ["Um dois\n\ntrês"]
