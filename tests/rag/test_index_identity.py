"""A collection's identity: every input of its vectors and its membership changes the collection it goes to."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptwiki_llm.config import ChunkingConfig, EmbeddingConfig
from ptwiki_llm.rag.identity import index_identity, model_files_sha256
from ptwiki_llm.rag.stores import collection_name
from tests.rag.conftest import make_config

PROMPTS = {"query": "query: ", "passage": "passage: "}


def _model(folder: Path) -> Path:
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    (folder / "tokenizer.json").write_text('{"vocab": ["a"]}')
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "README.md").write_text("a model")
    return folder


def _identity(model: Path, **changes):
    args = {"dataset_sha256": "d" * 64, "quarantined": [3, 1], "embedder_name": "e5", "embedder_dir": model,
            "prompts": PROMPTS, "embedding": EmbeddingConfig(), "chunking": ChunkingConfig()}
    args.update(changes)
    return index_identity(**args)


def test_model_files_hash_covers_weights_tokenizer_and_modules_not_docs(tmp_path):
    model = _model(tmp_path / "m")
    before = model_files_sha256(model)
    (model / "README.md").write_text("another description")
    assert model_files_sha256(model) == before
    for path, content in (("model.safetensors", b"\x01" * 64), ("tokenizer.json", b'{"vocab": ["b"]}'),
                          ("1_Pooling/config.json", b'{"pooling_mode_cls_token": true}')):
        original = (model / path).read_bytes()
        (model / path).write_bytes(content)
        assert model_files_sha256(model) != before, path
        (model / path).write_bytes(original)
    assert model_files_sha256(model) == before


def test_every_input_changes_the_fingerprint(tmp_path):
    model = _model(tmp_path / "m")
    base = _identity(model)
    assert _identity(model, quarantined=[1, 3]).fingerprint() == base.fingerprint()  # a set, not a list
    other_model = _model(tmp_path / "m2")
    (other_model / "model.safetensors").write_bytes(b"\x02" * 64)
    variants = {
        "dataset": _identity(model, dataset_sha256="e" * 64),
        "validation": _identity(model, quarantined=[1, 3, 5]),
        "nothing quarantined": _identity(model, quarantined=[]),
        "weights": _identity(other_model),
        "passage prompt": _identity(model, prompts={**PROMPTS, "passage": "passagem: "}),
        "query prompt": _identity(model, prompts={**PROMPTS, "query": "pergunta: "}),
        "prompt name": _identity(model, embedding=EmbeddingConfig(passage_prompt="")),
        "normalisation": _identity(model, embedding=EmbeddingConfig(normalize=False)),
        "chunk size": _identity(model, chunking=ChunkingConfig(max_tokens=120)),
        "heading": _identity(model, chunking=ChunkingConfig(heading_in_embedding=False)),
    }
    prints = {name: identity.fingerprint() for name, identity in variants.items()}
    assert base.fingerprint() not in prints.values()
    assert len(set(prints.values())) == len(prints), prints
    # settings that do not reach the vectors leave it alone
    assert _identity(model, embedding=EmbeddingConfig(batch_size=7, device="cpu")).fingerprint() == base.fingerprint()
    assert replace(base).to_dict()["fingerprint"] == base.fingerprint()
    name = collection_name("Ptwiki", base.dataset_sha256, "multilingual-e5-small-enpt", base.fingerprint())
    assert name == f"Ptwiki_{'d' * 12}_multilingual_e5_small_enpt_{base.fingerprint()}"


LIMIT = 6


def _article_chunk_ids(row, config, tokenizer) -> set[str]:
    from ptwiki_llm.rag.chunking import Chunker, ChunkStats, unique_chunks

    chunker = Chunker(tokenizer, config.rag.chunking)
    return {c.id for _, chunks in unique_chunks([row], chunker, ChunkStats()) for c in chunks}


@pytest.mark.parametrize("backend", ["lancedb", pytest.param("weaviate", marks=pytest.mark.weaviate)])
def test_a_validation_change_indexes_a_collection_without_the_newly_quarantined(
        backend, request, tmp_path, corpus, asset_folders, e5_tokenizer):
    from ptwiki_llm.rag.pointer import current_collection
    from ptwiki_llm.rag.stores import CollectionSpec, open_store
    from ptwiki_llm.stages import index_stage

    if backend == "weaviate":
        request.getfixturevalue("weaviate_env")
    config = make_config(tmp_path / "wd", asset_folders, embedding={"device": "cpu", "group_size": 8},
                         store={"backend": backend})
    first = index_stage(config, corpus["validated"], None, show_progress=False, max_articles=LIMIT)
    newly = corpus["rows"][2]  # accepted by the first validation, quarantined by the second
    revalidated = tmp_path / "validated-again"
    revalidated.mkdir()
    pq.write_table(pa.table({"id": pa.array([corpus["quarantined"], newly["id"]], pa.int64())}),
                   revalidated / "quarantine.parquet")
    second = index_stage(config, corpus["validated"].model_copy(update={"dir": str(revalidated)}), None,
                         show_progress=False, max_articles=LIMIT)

    assert second.collection != first.collection
    assert second.identity["quarantined_sha256"] != first.identity["quarantined_sha256"]
    assert second.identity["dataset_sha256"] == first.identity["dataset_sha256"]
    assert current_collection(config) == second.collection  # ask and evaluate now read the new one
    newly_ids = _article_chunk_ids(newly, config, e5_tokenizer)
    assert newly_ids
    with open_store(config) as store:
        for result, held in ((first, newly_ids), (second, set())):
            store.open(CollectionSpec(result.collection, result.dimension, result.embedder), create=False)
            assert store.existing_ids(sorted(newly_ids)) == held
            assert store.count() == result.counts.store_count
            store.drop(result.collection)
