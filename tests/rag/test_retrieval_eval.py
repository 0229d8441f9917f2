"""The retrieval-quality evaluation: SQuAD parsing, gold passages, metrics, and an end-to-end run."""

from __future__ import annotations

import gzip
import json

from ptwiki_llm.config import ChunkingConfig, Config
from ptwiki_llm.rag.chunking import Chunker
from ptwiki_llm.rag.retrieval_eval import evaluate_retrieval, gold_passages, load_squad, summarize
from ptwiki_llm.rag.stores import CollectionSpec


def _qa(qid: str, question: str, answer: str) -> dict:
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": 0}]}


SQUAD = {"data": [
    {"title": "Lisboa", "paragraphs": [{
        "context": "Lisboa é a capital de Portugal. A cidade fica na foz do rio Tejo e tem 550 mil habitantes.",
        "qas": [_qa("q1", "Qual é a capital de Portugal?", "Lisboa"), _qa("q2", "Em que rio fica Lisboa?", "rio Tejo")],
    }]},
    {"title": "Futebol", "paragraphs": [{
        "context": "O futebol chegou ao Brasil no fim do século XIX e tornou-se o esporte mais popular do país.",
        "qas": [_qa("q3", "Qual é o esporte mais popular do Brasil?", "O futebol")],
    }, {
        "context": "A floresta amazônica cobre boa parte do norte do Brasil e abriga milhões de espécies.",
        "qas": [_qa("q4", "O que a floresta amazônica abriga?", "uma resposta que não está no texto")],
    }]},
]}


def test_squad_paragraphs_become_articles_and_questions_point_at_them(tmp_path, e5_tokenizer):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    rows, items = load_squad(path)
    assert [r["id"] for r in rows] == [0, 1, 2] and rows[1]["title"] == "Futebol"
    assert [(i.qid, i.paragraph) for i in items] == [("q1", 0), ("q2", 0), ("q3", 1), ("q4", 2)]
    gold, fallbacks = gold_passages(rows, items, Chunker(e5_tokenizer, ChunkingConfig(min_chunk_chars=10)))
    assert fallbacks == 1 and all(len(g) == 1 for g in gold.values())  # q4's answer is not in its text


def test_summary_metrics():
    ranks = [1, 3, None, 10, 11]
    out = summarize(ranks, (1, 5, 10))
    assert out == {"recall@1": 0.2, "recall@5": 0.4, "recall@10": 0.6, "mrr@10": (1 + 1 / 3 + 1 / 10) / 5}


def test_end_to_end_on_an_easy_qa_file(tmp_path, e5_tokenizer, embedder):
    from ptwiki_llm.rag.stores.lancedb_store import LanceDBStore

    path = tmp_path / "qa.json.gz"
    path.write_bytes(gzip.compress(json.dumps(SQUAD).encode()))
    rag = Config(workdir=str(tmp_path)).rag
    rag.chunking.min_chunk_chars = 10
    store = LanceDBStore(tmp_path / "db", rag.store, rag.hnsw, rag.keyword)
    store.open(CollectionSpec("Eval", embedder.dimension, embedder.name))
    result = evaluate_retrieval(path, store, Chunker(e5_tokenizer, rag.chunking), embedder, rag,
                                modes=(("vector", None), ("hybrid", 0.5)), ks=(1, 2))
    assert result["paragraphs"] == 3 and result["questions"] == 4 and result["chunks_indexed"] == 3
    for mode in ("vector", "hybrid(alpha=0.5)"):
        assert result["metrics"][mode]["recall@1"] == 1.0, result["metrics"]
