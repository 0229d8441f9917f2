"""Backend-independent pieces: bounded retries, relative-score fusion, and Weaviate's connection errors."""

from __future__ import annotations

import socket
import time

import pytest

from ptwiki_llm.config import Config, WeaviateConfig
from ptwiki_llm.rag.chunking import Chunk
from ptwiki_llm.rag.stores import StoreUnavailableError, WriteError, collection_name
from ptwiki_llm.rag.stores.base import Hit, relative_score_fusion, retry_call, write_with_retries


def _chunk(i: int) -> Chunk:
    return Chunk(id=f"id-{i}", article_id=i, revision=1, title="t", url="u", section="", position=0, text=f"t{i}")


def test_failed_objects_are_retried_until_written():
    calls: list[list[int]] = []
    delays: list[float] = []

    def write(items):
        calls.append(list(items))
        # first attempt: items 1 and 3 fail; second: item 3 fails again; third: all through
        return {i: "busy" for i, item in enumerate(items) if item in ((1, 3), (3,))[len(calls) - 1]} \
            if len(calls) <= 2 else {}

    assert write_with_retries([0, 1, 2, 3], write, max_retries=4, backoff_s=0.5, what="x", sleep=delays.append) == 4
    assert calls == [[0, 1, 2, 3], [1, 3], [3]]
    assert delays == [0.5, 1.0]  # doubling backoff


def test_objects_failing_after_the_retries_are_reported_never_dropped():
    delays: list[float] = []
    items = [(_chunk(i), None) for i in range(3)]
    with pytest.raises(WriteError, match=r"1 of 3 objects .* after 3 retries .*id-2: rejected"):
        write_with_retries(items, lambda batch: {i: "rejected" for i, (c, _) in enumerate(batch) if c.id == "id-2"},
                           max_retries=3, backoff_s=4.0, what="the store", sleep=delays.append)
    assert delays == [4.0, 8.0, 8.0]  # bounded


def test_a_raising_write_retries_the_whole_batch():
    attempts = []

    def write(items):
        attempts.append(len(items))
        if len(attempts) == 1:
            raise ConnectionError("reset")
        return {}

    assert write_with_retries([1, 2], write, max_retries=1, backoff_s=0, what="x", sleep=lambda s: None) == 2
    assert attempts == [2, 2]


def test_retry_call_gives_up_with_the_callers_error():
    with pytest.raises(StoreUnavailableError, match="gave up"):
        retry_call(lambda: 1 / 0, attempts=3, backoff_s=0, on_fail=lambda e: StoreUnavailableError(f"gave up: {e}"),
                   sleep=lambda s: None)


def test_relative_score_fusion_matches_weaviates_definition():
    # Weaviate docs: scores [1, 8, 6, 11] normalize to [0, 0.7, 0.5, 1]
    keyword = [Hit(_chunk(3), 11.0), Hit(_chunk(1), 8.0), Hit(_chunk(2), 6.0), Hit(_chunk(0), 1.0)]
    vector = [Hit(_chunk(0), 0.9), Hit(_chunk(4), 0.5)]
    fused = relative_score_fusion(vector, keyword, alpha=0.25, k=10)
    scores = {h.chunk.id: round(h.score, 6) for h in fused}
    assert scores == {"id-3": 0.75, "id-1": 0.525, "id-2": 0.375, "id-0": 0.25, "id-4": 0.0}
    assert [h.chunk.id for h in fused] == ["id-3", "id-1", "id-2", "id-0", "id-4"]
    # equal scores in a list: each gets the list's full weight; k cuts the list
    same = relative_score_fusion([Hit(_chunk(5), 0.3), Hit(_chunk(6), 0.3)], [], alpha=0.5, k=1)
    assert len(same) == 1 and same[0].score == 0.5


def test_collection_names_separate_corpora_embedders_and_chunkings():
    name = collection_name("ptwiki", "46495c217c884bb6aa", "multilingual-e5-small-enpt", "6c429cec")
    assert name == "Ptwiki_46495c217c88_multilingual_e5_small_enpt_6c429cec"
    assert collection_name("ptwiki", "46495c217c884bb6aa", "other", "6c429cec") != name


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_weaviate_is_a_clear_error_naming_the_url():
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    rag = Config().rag
    url = f"http://127.0.0.1:{_closed_port()}"
    cfg = WeaviateConfig(url=url, grpc_port=_closed_port(), connect_retries=2, timeout_s=2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Weaviate at {url} .* unreachable after 2 attempts"):
        WeaviateStore(cfg, rag.store, rag.hnsw, rag.keyword)
    assert time.monotonic() - started < 30  # bounded


def test_weaviate_without_a_url_says_how_to_set_one(monkeypatch):
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    monkeypatch.delenv("WEAVIATE_URL", raising=False)
    rag = Config().rag
    with pytest.raises(StoreUnavailableError, match="WEAVIATE_URL"):
        WeaviateStore(WeaviateConfig(), rag.store, rag.hnsw, rag.keyword)
