"""A real weaviate-server (started by tests/rag/conftest.py): authentication, kill -9 mid-index and a restart on
the same data, and the default pipeline with rag.store.backend=weaviate followed by `ask --rag`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ptwiki_llm.config import Config, WeaviateConfig
from ptwiki_llm.rag.stores import StoreUnavailableError
from tests.conftest import TINY_RUN, run_cli
from tests.rag.conftest import EMBEDDER, SAMPLE, make_config
from tests.rag.test_index import _expected_ids, _start_worker, write_index_job

pytestmark = pytest.mark.weaviate
RAG = {"embedding": {"device": "cpu", "group_size": 8}, "store": {"backend": "weaviate"}}


def _open_weaviate(**cfg: object):
    from ptwiki_llm.rag.stores.weaviate_store import WeaviateStore

    rag = Config().rag
    return WeaviateStore(WeaviateConfig(**cfg), rag.store, rag.hnsw, rag.keyword)


@pytest.mark.parametrize("key", ["not-the-key", None], ids=["wrong key", "no key"])
def test_a_wrong_or_missing_api_key_is_a_clear_error_not_a_hang(weaviate_server, monkeypatch, key):
    monkeypatch.setenv("WEAVIATE_URL", weaviate_server.url)
    if key is None:
        monkeypatch.delenv("WEAVIATE_API_KEY", raising=False)
    else:
        monkeypatch.setenv("WEAVIATE_API_KEY", key)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        _open_weaviate(timeout_s=10)
    message = str(raised.value)
    assert "WEAVIATE_API_KEY" in message and weaviate_server.url.split("?")[0] in message
    assert ("rejected the API key" if key else "requires an API key") in message
    assert time.monotonic() - started < 60, "an authentication failure must not wait out retries and timeouts"


def _collections(store) -> list[str]:
    return [name for name in store.client.collections.list_all(simple=True) if name.startswith("Ptwiki_")]


def test_kill_9_mid_index_then_restart_on_the_same_data(weaviate_binary, tmp_path, corpus, asset_folders,
                                                        e5_tokenizer, monkeypatch):
    """The server dies without a flush while the index step writes; restarted on the same folder, a second index
    run ends with exactly the expected passages (the same count, no duplicates)."""
    from ptwiki_llm.rag.stores.local_weaviate import LocalWeaviate

    server = LocalWeaviate(tmp_path / "weaviate", weaviate_binary).start()
    try:
        monkeypatch.setenv("WEAVIATE_URL", server.url)
        monkeypatch.setenv("WEAVIATE_API_KEY", server.api_key)
        config = make_config(tmp_path / "wd", asset_folders, **RAG)
        expected = _expected_ids(corpus["rows"], corpus["quarantined"], config, e5_tokenizer)
        job = write_index_job(tmp_path, config, corpus, RAG)
        worker = _start_worker(job)
        partial = 0
        watcher = _open_weaviate()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and worker.poll() is None:
            names = _collections(watcher)
            partial = int(watcher.client.collections.use(names[0]).aggregate.over_all(total_count=True)
                          .total_count or 0) if names else 0
            if partial > 0:
                server.kill()
                break
            time.sleep(0.2)
        watcher.close()
        assert partial > 0, "the index run finished before the server could be killed: " + worker.stderr.read()[-2000:]
        assert 0 < partial < len(expected)
        _, err = worker.communicate(timeout=300)  # the writer fails with an error, it does not hang
        assert worker.returncode not in (0, -signal.SIGKILL), err[-2000:]
        assert "Weaviate" in err or "weaviate" in err, err[-2000:]

        server.start()  # same data folder, same ports
        resumed = _start_worker(job)
        out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["counts"]["store_count"] == len(expected)
        assert result["counts"]["embedded"] == len(expected) - result["counts"]["already_indexed"]
        with _open_weaviate() as store:
            (name,) = _collections(store)
            ids = [str(o.uuid) for o in store.client.collections.use(name).iterator(return_properties=[])]
        assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    finally:
        server.stop()


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(workdir, *args, max_articles=12, timeout=1200, PTWIKI_RAG__STORE__BACKEND="weaviate")


@pytest.mark.slow
def test_the_default_pipeline_on_weaviate_then_ask_from_it(tmp_path, asset, weaviate_env):
    for name in (SAMPLE, EMBEDDER, "models/smollm2-135m-instruct-gguf"):
        asset(name)
    result = _cli(tmp_path, "run", *TINY_RUN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pointer = json.loads((tmp_path / "rag" / "current-weaviate.json").read_text())
    assert pointer["backend"] == "weaviate" and pointer["location"] == weaviate_env.url
    assert pointer["counts"]["store_count"] == pointer["counts"]["embedded"] > 0
    with _open_weaviate() as store:
        held = store.client.collections.use(pointer["collection"]).aggregate.over_all(total_count=True)
        assert held.total_count == pointer["counts"]["store_count"]

    asked = _cli(tmp_path, "ask", "Qual é o assunto destes artigos?", "--rag", "--k", "2",
                 "--set", "rag.answer.max_new_tokens=16")
    assert asked.returncode == 0, asked.stdout[-3000:] + asked.stderr[-3000:]
    assert "Fontes" in asked.stdout and "[1] " in asked.stdout and "https://pt.wikipedia.org/wiki/" in asked.stdout
