"""Evidence under a RAG answer: how relevant the sources are, and the sentences of them that support the answer.

Both use the project's embedder, so they speak the retrieval's language: a source's relevance is the
cosine between the question (``query:``) and the passage as it was indexed (``passage:``), whatever the
retrieval mode ranked by (hybrid scores are fused ranks, not similarities); a sentence's support is the
cosine between the question plus the answer (or the question alone when there is no answer) and that
sentence. Under the threshold ``rag.answer.not_found_below`` (calibrated on FaQuAD:
ptwiki_llm/rag/calibration.py) the sources do not hold the answer, and RAG says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ptwiki_llm.rag.stores import Hit

NOT_FOUND = "Não encontrado nas fontes."
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[\"'(«A-ZÀ-Ý0-9])|\n+")
_MIN_SENTENCE_CHARS = 20


@dataclass(frozen=True)
class Evidence:
    source: int  # the source's number in the prompt, from 1
    title: str
    url: str
    sentence: str
    score: float  # cosine to the question (+ answer)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "title": self.title, "url": self.url, "sentence": self.sentence,
                "score": round(self.score, 4)}


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage (Portuguese punctuation; a capital, digit or quote starts the next one)."""
    pieces = (p.strip() for p in _SENTENCE_END.split(text))
    return [p for p in pieces if len(p) >= _MIN_SENTENCE_CHARS]


def source_relevance(embedder: Any, question: str, hits: list[Hit], heading_in_embedding: bool = True) -> list[float]:
    """Cosine between the question and each passage, embedded as the index embedded it."""
    if not hits:
        return []
    query = embedder.embed_query(question)
    passages = embedder.embed_passages([h.chunk.embedding_text(heading_in_embedding) for h in hits])
    return [float(v) for v in passages @ query]


class SourceSentences:
    """The sentences of a set of sources, embedded once; ``best`` ranks them against a question and answer."""

    def __init__(self, embedder: Any, hits: list[Hit]) -> None:
        self.embedder = embedder
        self.sentences = [(number, hit, sentence) for number, hit in enumerate(hits, 1)
                          for sentence in split_sentences(hit.chunk.text)]
        self.vectors = embedder.embed_passages([s for _, _, s in self.sentences]) if self.sentences else None

    def best(self, question: str, answer: str, n: int, sources: int | None = None) -> list[Evidence]:
        """The ``n`` sentences closest to the question and answer, from the first ``sources`` sources (all)."""
        if self.vectors is None or n <= 0:
            return []
        query = self.embedder.embed_query(f"{question} {answer}".strip())
        scores = self.vectors @ query
        allowed = [i for i, (number, _, _) in enumerate(self.sentences) if sources is None or number <= sources]
        order = sorted(allowed, key=lambda i: -scores[i])[:n]
        return [Evidence(number, hit.chunk.title, hit.chunk.url, sentence, float(scores[i]))
                for i in order for number, hit, sentence in [self.sentences[i]]]
