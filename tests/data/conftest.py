"""Shared helpers of the data tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.data.article import ARTICLE_SCHEMA


def write_shard(path: Path, rows: list[tuple[int | None, str | None, str | None]]) -> Path:
    """A parquet shard in the ingest's schema from (id, title, text) triples."""
    table = pa.Table.from_pylist(
        [
            {
                "id": i,
                "revision": 1,
                "title": title,
                "url": f"https://pt.wikipedia.org/wiki/{title}",
                "text": text,
                "sections": [{"heading": "", "level": 1, "text": text}],
                "source": "test",
            }
            for i, title, text in rows
        ],
        schema=ARTICLE_SCHEMA,
    )
    pq.write_table(table, path)
    return path
