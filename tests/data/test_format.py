from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from ptwiki_llm.config import FormatConfig
from ptwiki_llm.data.article import ARTICLE_SCHEMA, Article, Section
from ptwiki_llm.data.format import (
    PROMPT_NO_INPUT,
    completion_examples,
    eval_bucket,
    format_articles,
    instruction_examples,
    is_eval,
    truncate_at_sentence,
)

LEAD = ("Lisboa é a capital e a maior cidade de Portugal. É a sede do governo e do presidente da República. "
        "A cidade fica na margem norte do rio Tejo e tem uma longa história comercial e cultural. ") * 2
LEAD = LEAD.strip()
HISTORY = ("A cidade foi ocupada por fenícios, romanos e mouros antes da conquista cristã em 1147. "
           "O terramoto de 1755 destruiu grande parte da baixa, reconstruída pelo Marquês de Pombal. ") * 2
HISTORY = HISTORY.strip()


def _article(page_id: int, title: str = "Lisboa") -> dict:
    article = Article(id=page_id, revision=1, title=title, url="u", source="test",
                      sections=[Section("", 1, LEAD), Section("História", 2, HISTORY), Section("Curta", 2, "x")])
    return article.to_row()


def test_split_is_a_function_of_the_page_id_alone():
    assert eval_bucket(42) == eval_bucket(42)
    ids = range(20_000)
    share = sum(is_eval(i, 0.05) for i in ids) / len(ids)
    assert 0.04 < share < 0.06
    # growing the fraction only moves articles into eval, never out
    assert all(is_eval(i, 0.10) for i in ids if is_eval(i, 0.05))


def test_instruction_examples_kinds_and_template():
    cfg = FormatConfig(min_section_chars=100)
    examples = instruction_examples(_article(7), cfg)
    kinds = [e.kind for e in examples]
    assert kinds == ["explain", "title", "section", "summarize"]  # "Curta" is too short for a section
    explain = examples[0].text
    assert explain.startswith(PROMPT_NO_INPUT.split("{")[0])
    assert "### Instrução:\n" in explain and "Lisboa" in explain and explain.endswith(LEAD.strip())
    summarize = examples[-1].text
    assert "### Entrada:\n" in summarize and "História" in summarize
    assert "### Resposta:\n" in summarize


def test_instruction_phrasing_is_deterministic():
    cfg = FormatConfig(min_section_chars=100)
    assert [e.text for e in instruction_examples(_article(7), cfg)] == [
        e.text for e in instruction_examples(_article(7), cfg)
    ]


def test_completion_chunks_cover_the_text_in_order():
    cfg = FormatConfig(mode="completion", completion_chunk_chars=300)
    row = _article(9)
    chunks = completion_examples(row, cfg)
    assert len(chunks) > 1
    joined = "\n\n".join(c.text for c in chunks)
    assert joined.startswith("Lisboa\n\n") and "terramoto de 1755" in joined


def test_truncate_at_sentence():
    text = "Primeira frase. Segunda frase é longa. Terceira."
    assert truncate_at_sentence(text, 1000) == text
    assert truncate_at_sentence(text, 40) == "Primeira frase. Segunda frase é longa."


def test_format_articles_split_exclusion_and_token_stats(tmp_path):
    rows = [_article(i, f"Título {i}") for i in range(1, 201)]
    shard = tmp_path / "part-00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ARTICLE_SCHEMA), shard)
    cfg = FormatConfig(min_section_chars=100, eval_fraction=0.2)

    def count_words(texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    result = format_articles([shard], tmp_path / "out", cfg, exclude_ids={1, 2, 3}, tokenize=count_words,
                             show_progress=False)
    train = [json.loads(line) for line in result.train_path.read_text().splitlines()]
    evals = [json.loads(line) for line in result.eval_path.read_text().splitlines()]
    assert all(set(item) == {"text"} for item in train + evals)
    summary = result.summary
    assert summary["articles"]["train"] + summary["articles"]["eval"] == 197
    assert summary["excluded_quarantined"] == 3
    assert summary["example_count"] == {"train": len(train), "eval": len(evals)}
    expected_eval = sum(is_eval(i, 0.2) for i in range(4, 201))
    assert summary["articles"]["eval"] == expected_eval
    assert not any("Título 1\n" in t["text"] or "Título 2\n" in t["text"] for t in train + evals)
    assert summary["tokens"]["sampled_examples"] == len(train) + len(evals)
    assert (tmp_path / "out" / "summary.json").exists()
    assert not (tmp_path / "out.partial").exists()
    # determinism: the same input gives byte-identical files
    again = format_articles([shard], tmp_path / "again", cfg, exclude_ids={1, 2, 3}, show_progress=False)
    assert again.train_path.read_bytes() == result.train_path.read_bytes()
