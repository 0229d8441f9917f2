from __future__ import annotations

import itertools
import uuid

import pytest

from ptwiki_llm.config import ChunkingConfig
from ptwiki_llm.rag.chunking import Chunker, ChunkStats, chunk_id, unique_chunks

SENTENCE = "O rio Amazonas atravessa a floresta e recebe centenas de afluentes ao longo do caminho. "


def _article(sections, id_=7, revision=3):
    return {"id": id_, "revision": revision, "title": "Rio Amazonas", "url": "https://pt.wikipedia.org/wiki/Rio_Amazonas",
            "text": "", "sections": [{"heading": h, "level": 2, "text": t} for h, t in sections]}


@pytest.fixture
def chunker(e5_tokenizer):
    return Chunker(e5_tokenizer, ChunkingConfig(max_tokens=64, overlap_tokens=16, min_chunk_chars=20))


def test_chunks_stay_inside_sections_and_keep_provenance(chunker):
    article = _article([("", SENTENCE * 2), ("Geografia", SENTENCE * 12), ("Ver também", "x"), ("Clima", "")])
    chunks = chunker.chunk_article(article)
    assert {c.section for c in chunks} == {"", "Geografia"}  # "x" is too short, "Clima" is empty
    assert all(c.article_id == 7 and c.revision == 3 and c.title == "Rio Amazonas" and c.url.endswith("Amazonas")
               for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len([c for c in chunks if c.section == "Geografia"]) > 3
    lead = [c for c in chunks if c.section == ""]
    assert lead and all(SENTENCE.strip()[:20] in c.text for c in lead)


def test_chunks_respect_the_token_budget_and_overlap(chunker):
    text = " ".join(f"A frase número {i} fala do rio e das suas margens." for i in range(80))
    chunks = chunker.chunk_article(_article([("História", text)]))
    assert len(chunks) > 5
    assert max(chunker.token_count(c.text) for c in chunks) <= 64 + 1  # +1: a re-tokenized slice may gain "▁"
    for previous, following in itertools.pairwise(chunks):
        # the next chunk starts inside the previous one (overlap), at a sentence start
        assert following.text[:25] in previous.text
        assert following.text.startswith("A frase número")
    # together the chunks cover every sentence
    assert all(f"número {i} " in " ".join(c.text for c in chunks) for i in range(80))


def test_ids_are_deterministic_uuid5(chunker):
    article = _article([("Geografia", SENTENCE * 10)])
    first, again = chunker.chunk_article(article), chunker.chunk_article(article)
    assert [c.id for c in first] == [c.id for c in again]
    assert first[0].id == chunk_id(7, 3, 0)
    assert uuid.UUID(first[0].id).version == 5
    new_revision = chunker.chunk_article(_article([("Geografia", SENTENCE * 10)], revision=4))
    assert not {c.id for c in first} & {c.id for c in new_revision}
    assert len({c.id for c in first}) == len(first)


def test_a_very_long_article_without_boundaries_is_cut_at_words(chunker):
    # 60k characters, no sentence ends, no sections: still bounded chunks sliced at word starts
    words = [f"palavra{i}" for i in range(6000)]
    chunks = chunker.chunk_article({"id": 1, "revision": None, "title": "T", "url": "u", "text": " ".join(words),
                                    "sections": []})
    assert len(chunks) > 50
    assert all(chunker.token_count(c.text) <= 65 for c in chunks)
    assert all(c.text.split()[0].startswith("palavra") for c in chunks)
    assert chunks[-1].text.endswith("palavra5999")


def test_empty_articles_and_duplicate_passages_are_dropped(chunker):
    stats = ChunkStats()
    rows = [_article([("A", SENTENCE * 2)], id_=1), _article([("", "   ")], id_=2),
            _article([("B", SENTENCE * 2)], id_=3),
            _article([("", "Um texto diferente, sobre o Tejo e Lisboa.")], id_=4)]
    out = {row["id"]: chunks for row, chunks in unique_chunks(rows, chunker, stats)}
    assert out[2] == [] and out[3] == []  # id 3 repeats id 1's passage word for word
    assert len(out[1]) == 1 and len(out[4]) == 1
    assert stats.duplicates_dropped == 1 and stats.articles == 4 and stats.articles_without_chunks == 2


def test_embedding_text_carries_the_heading(chunker):
    chunk = chunker.chunk_article(_article([("Geografia", SENTENCE)]))[0]
    assert chunk.embedding_text().startswith("Rio Amazonas — Geografia\n")
    assert chunk.embedding_text(with_heading=False) == chunk.text


def test_overlap_must_stay_below_half_the_chunk():
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkingConfig(max_tokens=64, overlap_tokens=40)
