"""Fixtures for the RAG tests: the staged embedder, a small real article corpus, configs in tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptwiki_llm.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
EMBEDDER = "models/multilingual-e5-small-enpt"
SAMPLE = "data/ptwiki_namespace_0_sample.tar.gz"


def make_config(workdir: Path, asset_folders: list[Path], **rag: object) -> Config:
    return load_config(REPO / "configs" / "local.yaml",
                       {"workdir": str(workdir), "asset_path": [str(p) for p in asset_folders], "rag": rag},
                       environ={})


@pytest.fixture(scope="session")
def e5_dir(asset) -> Path:
    return asset(EMBEDDER)


@pytest.fixture(scope="session")
def e5_tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_dir), local_files_only=True)


@pytest.fixture(scope="session")
def embedder(e5_dir):
    from ptwiki_llm.config import EmbeddingConfig
    from ptwiki_llm.rag.embeddings import Embedder

    return Embedder(e5_dir, "multilingual-e5-small-enpt", EmbeddingConfig(device="cpu"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, asset, asset_folders) -> dict:
    """40 real articles from the staged sample (ingested), and a validation folder quarantining one."""
    from ptwiki_llm.data.ingest import ingest, shard_paths
    from ptwiki_llm.data.sources.base import ConvertOptions
    from ptwiki_llm.data.validate import ValidationCounts, ValidationResult

    source = asset(SAMPLE)
    root = tmp_path_factory.mktemp("corpus")
    cfg = make_config(root / "wd", asset_folders)
    options = ConvertOptions(wiki_base_url=cfg.data.wiki_base_url, max_article_bytes=cfg.data.ingest.max_article_bytes,
                             min_text_chars=cfg.data.ingest.min_text_chars)
    result = ingest(source, root / "articles", options, cfg.data.ingest, max_articles=40, show_progress=False)
    rows = pq.read_table(shard_paths(root / "articles")).to_pylist()
    validated = root / "validated"
    validated.mkdir()
    quarantined = rows[1]["id"]
    pq.write_table(pa.table({"id": pa.array([quarantined], pa.int64())}), validated / "quarantine.parquet")
    counts = ValidationCounts(**result.manifest["counts"], quarantined=1, accepted=len(rows) - 1)
    return {
        "validated": ValidationResult(articles_dir=str(root / "articles"), dir=str(validated),
                                      dataset_sha256=result.manifest["dataset_sha256"],
                                      quarantine=str(validated / "quarantine.parquet"), counts=counts),
        "rows": rows,
        "quarantined": quarantined,
    }


# --- a real Weaviate server (infra/weaviate/build-local.sh builds the binary; .ci/run exports its path) ---


@pytest.fixture(scope="session")
def weaviate_binary() -> Path:
    """The weaviate-server binary; skips (saying how to build it) when there is none, fails when
    WEAVIATE_SERVER_BIN names one that does not exist (CI sets it, so CI never skips these tests)."""
    import os

    from ptwiki_llm.rag.stores.local_weaviate import missing_binary_reason, server_binary

    binary = server_binary()
    if binary is None:
        if os.environ.get("WEAVIATE_SERVER_BIN"):
            pytest.fail(missing_binary_reason())
        print(f"SKIP weaviate: {missing_binary_reason()}")
        pytest.skip(missing_binary_reason())
    return binary


@pytest.fixture(scope="session")
def weaviate_server(weaviate_binary, tmp_path_factory):
    """One server for the session: 127.0.0.1, free ports, API-key auth, data in a temp folder."""
    from ptwiki_llm.rag.stores.local_weaviate import LocalWeaviate

    server = LocalWeaviate(tmp_path_factory.mktemp("weaviate") / "data", weaviate_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def weaviate_env(weaviate_server, monkeypatch):
    """WEAVIATE_URL (with the gRPC port) and WEAVIATE_API_KEY of the session's server, for this test."""
    monkeypatch.setenv("WEAVIATE_URL", weaviate_server.url)
    monkeypatch.setenv("WEAVIATE_API_KEY", weaviate_server.api_key)
    return weaviate_server
