"""The index job array's shard split and merge (ptwiki_llm/rag/index_parts.py), without SLURM.

The passages are real (40 staged articles, the E5 tokenizer's chunking); the vectors come from a
deterministic stand-in embedder, so these tests take seconds: what they check is that the parts, merged
in any order and from any number of tasks, write exactly what ``build_index`` writes.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from ptwiki_llm.rag.chunking import Chunker
from ptwiki_llm.rag.index import build_index, new_report
from ptwiki_llm.rag.index_parts import (
    IndexPartsError,
    build_part,
    merge_parts,
    part_key,
    part_paths,
    part_records,
    shard_of,
)
from ptwiki_llm.rag.stores import CollectionSpec, open_store
from tests.rag.conftest import make_config

DIM = 8
RAG = {"embedding": {"device": "cpu", "group_size": 16}}
IDENTITY = {"dataset_sha256": "d" * 64, "embedder": "stand-in"}


class HashEmbedder:
    """Vectors from the text's hash: what matters here is which vector belongs to which passage."""

    name = "stand-in"
    dimension = DIM
    precision = "float32"
    def __init__(self) -> None:
        self.identity = {"backend": "test", "quantization": "none", "model_sha256": None}
        self.calls = 0

    def embed_passages(self, texts):
        self.calls += 1
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "big") for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(DIM).astype(np.float32) for s in seeds]) \
            if texts else np.zeros((0, DIM), np.float32)


@pytest.fixture
def rows(corpus):
    # twice the corpus: every passage of the second half duplicates one of the first, in another article
    base = [r for r in corpus["rows"] if r["id"] != corpus["quarantined"]]
    return base + [{**r, "id": r["id"] + 10_000_000} for r in base[:10]]


def _store(tmp_path, asset_folders, name):
    config = make_config(tmp_path / name, asset_folders, **RAG)
    store = open_store(config)
    store.open(CollectionSpec(name="Ptwiki_parts_test", dimension=DIM, embedder="stand-in"))
    return config, store


def _contents(store):
    table = store.table.to_arrow().sort_by("id")
    return table["id"].to_pylist(), np.stack(table["vector"].to_numpy(zero_copy_only=False))


def _keys(tasks):
    return [part_key(IDENTITY, "float32", None, task, tasks) for task in range(tasks)]


def _parts(rows, tokenizer, config, parts_dir, tasks, order=None):
    embedder = HashEmbedder()
    for task in order or range(tasks):
        build_part(rows, Chunker(tokenizer, config.rag.chunking), embedder, config.rag, parts_dir, task, tasks,
                   _keys(tasks)[task])
    return part_records(parts_dir, _keys(tasks), lambda t: f"log-{t}")


def test_the_shard_of_an_article_is_stable_and_each_article_has_one():
    ids = range(1, 2001)
    assert [shard_of(i, 4) for i in ids] == [shard_of(i, 4) for i in ids]
    assert shard_of(2_143_923, 4) == int.from_bytes(hashlib.blake2b(b"2143923", digest_size=8).digest(), "big") % 4
    sizes = Counter(shard_of(i, 4) for i in ids)
    assert set(sizes) == {0, 1, 2, 3} and min(sizes.values()) > 400  # about a quarter each
    assert {shard_of(i, 1) for i in ids} == {0}


def test_parts_merged_in_any_order_and_from_any_task_count_write_what_one_process_writes(
        tmp_path, asset_folders, rows, e5_tokenizer):
    config, single = _store(tmp_path, asset_folders, "single")
    embedder = HashEmbedder()
    chunker = Chunker(e5_tokenizer, config.rag.chunking)
    expected = build_index(rows, chunker, embedder, single, config.rag, show_progress=False)
    assert expected.duplicates_dropped > 0  # the duplicated articles are in the test
    expected_ids, expected_vectors = _contents(single)

    for tasks, order in ((3, [2, 0, 1]), (2, None)):
        parts_dir = tmp_path / f"parts-{tasks}"
        records = _parts(rows, e5_tokenizer, config, parts_dir, tasks, order)
        assert sum(r["articles"] for r in records) == len(rows)
        _, merged = _store(tmp_path, asset_folders, f"merged-{tasks}")
        report = merge_parts(parts_dir, list(reversed(records)), new_report(merged, embedder), merged, config.rag,
                             show_progress=False)
        ids, vectors = _contents(merged)
        assert ids == expected_ids and np.array_equal(vectors, expected_vectors)
        for count in ("articles", "articles_without_chunks", "chunks", "short_dropped", "duplicates_dropped",
                      "embedded", "written", "store_count"):
            assert getattr(report, count) == getattr(expected, count), count
        assert [p["task"] for p in report.extra["array_parts"]] == list(range(tasks))
        assert [p["sha256"] for p in report.extra["array_parts"]] == [r["sha256"] for r in records]

    again = merge_parts(tmp_path / "parts-2", records, new_report(merged, embedder), merged, config.rag,
                        show_progress=False)  # resumable as build_index: what the store holds is not rewritten
    assert again.embedded == 0 and again.already_indexed == expected.chunks


def test_a_missing_or_changed_part_fails_the_merge_naming_the_task_and_a_rerun_redoes_only_it(
        tmp_path, asset_folders, rows, e5_tokenizer):
    config = make_config(tmp_path / "wd", asset_folders, **RAG)
    parts_dir = tmp_path / "parts"
    records = _parts(rows, e5_tokenizer, config, parts_dir, 3)
    parquet, record = part_paths(parts_dir, 1, 3, _keys(3)[1])
    record.unlink()
    with pytest.raises(IndexPartsError, match=r"1 of 3 parts .* task 1: no part part-00001-of-00003-.*log-1"):
        part_records(parts_dir, _keys(3), lambda t: f"log-{t}")
    with pytest.raises(IndexPartsError, match="task 0: no part"):  # parts of another key are not used
        part_records(parts_dir, [part_key(IDENTITY, "bf16-autocast", None, t, 3) for t in range(3)], str)

    embedder = HashEmbedder()
    chunker = Chunker(e5_tokenizer, config.rag.chunking)
    for task in range(3):  # the re-run: tasks 0 and 2 find their parts, task 1 embeds again
        built = build_part(rows, chunker, embedder, config.rag, parts_dir, task, 3, _keys(3)[task])
        assert built["reused"] == (task != 1) and built["sha256"] == records[task]["sha256"]
    assert embedder.calls > 0 and not list(parts_dir.glob("*.partial"))

    parquet.write_bytes(parquet.read_bytes()[:-10])
    with pytest.raises(IndexPartsError, match=r"task 1: .* differs from the sha256 its record holds"):
        part_records(parts_dir, _keys(3), lambda t: f"log-{t}")


@pytest.mark.weaviate
def test_parts_merged_into_weaviate_hold_the_single_process_passages_and_vectors(
        tmp_path, asset_folders, rows, e5_tokenizer, weaviate_env):
    config, single = _store(tmp_path, asset_folders, "single")
    expected = build_index(rows, Chunker(e5_tokenizer, config.rag.chunking), HashEmbedder(), single, config.rag,
                           show_progress=False)
    expected_ids, expected_vectors = _contents(single)
    records = _parts(rows, e5_tokenizer, config, tmp_path / "parts", 2)
    weaviate = make_config(tmp_path / "weaviate", asset_folders, **RAG, store={"backend": "weaviate"})
    with open_store(weaviate) as store:
        spec = CollectionSpec(name="Ptwiki_parts_merge_test", dimension=DIM, embedder="stand-in")
        store.drop(spec.name)
        store.open(spec)
        try:
            report = merge_parts(tmp_path / "parts", records, new_report(store, HashEmbedder()), store, weaviate.rag,
                                 show_progress=False)
            assert report.store_count == expected.store_count == len(expected_ids)
            assert report.chunks == expected.chunks and report.duplicates_dropped == expected.duplicates_dropped
            for chunk_id, vector in zip(expected_ids, expected_vectors, strict=True):
                (hit,) = store.search(vector, k=1)  # each passage's nearest object is itself, at distance 0
                assert hit.chunk.id == chunk_id and hit.score > 1 - 1e-5
        finally:
            store.drop(spec.name)
