"""One question, one or every arm (base, ft, base+rag, ft+rag, champion), each answer with its evidence.

The one code path behind ``ask``, ``compare`` and the arena page (``serve``): the same config, the
same registry versions, the same retrieval, prompts and stop rules. An :class:`Answerer` loads each
model once and keeps it (and the retriever with its embedder) for every later question, so a warm
comparison costs only retrieval and generation. RAG arms share one retrieval per question; when the
best source's relevance falls under ``rag.answer.not_found_below`` they answer "not found in the
sources" without generating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ptwiki_llm.config import Config
from ptwiki_llm.evaluation.arms import Arm, EvaluationSetupError, Versions, arm_of, load_arm_model, plan_arms
from ptwiki_llm.rag.answer import answer_question
from ptwiki_llm.rag.evidence import NOT_FOUND, Evidence, SourceSentences, source_relevance
from ptwiki_llm.rag.generation import Generated
from ptwiki_llm.rag.stores import Hit


def source_dict(number: int, hit: Hit, relevance: float | None) -> dict[str, Any]:
    chunk = hit.chunk
    return {"number": number, "title": chunk.title, "section": chunk.section, "url": chunk.url,
            "score": round(float(hit.score), 4), "relevance": None if relevance is None else round(relevance, 4),
            "text": chunk.text}


@dataclass
class ArmAnswer:
    arm: str
    model: str  # what answered: "base", "ft v3", "champion v2"
    rag: bool
    text: str  # what is shown: the answer, "(no answer)" or "not found in the sources"
    generated: Generated | None  # None when RAG found nothing to answer from
    sources: list[Hit] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    not_found: bool = False
    seconds: float = 0.0

    def to_dict(self, relevance: Sequence[float] = ()) -> dict[str, Any]:
        return {
            "arm": self.arm, "model": self.model, "rag": self.rag, "answer": self.text, "not_found": self.not_found,
            "no_answer": self.generated is not None and not self.generated.text,
            "loop": bool(self.generated and self.generated.loop), "echo": bool(self.generated and self.generated.echo),
            "raw": self.generated.raw if self.generated else "",
            "sources": [source_dict(n, h, relevance[n - 1] if n <= len(relevance) else None)
                        for n, h in enumerate(self.sources, 1)],
            "evidence": [e.to_dict() for e in self.evidence], "seconds": round(self.seconds, 2),
        }


@dataclass
class Comparison:
    question: str
    answers: list[ArmAnswer]
    hits: list[Hit]
    relevance: list[float]  # question-passage cosine of each hit
    threshold: float | None
    retrieval_mode: str | None
    seconds: float
    versions: Versions
    notes: list[str] = field(default_factory=list)

    @property
    def not_found(self) -> bool:
        return any(a.not_found for a in self.answers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answers": [a.to_dict(self.relevance) for a in self.answers],
            "sources": [source_dict(n, h, r)
                        for n, (h, r) in enumerate(zip(self.hits, self.relevance, strict=True), 1)],
            "not_found": self.not_found, "not_found_below": self.threshold, "retrieval_mode": self.retrieval_mode,
            "seconds": round(self.seconds, 2),
            "versions": {"challenger": self.versions.challenger, "champion": self.versions.champion},
            "notes": self.notes,
        }


def model_label(model: str, versions: Versions) -> str:
    version = {"ft": versions.challenger, "champion": versions.champion}.get(model)
    return f"{model} v{version}" if version else model


class Answerer:
    """Answers questions with the configured arms; models, retriever and embedder are loaded once and kept."""

    def __init__(self, config: Config, versions: Versions | None = None) -> None:
        from ptwiki_llm.evaluation.arms import registry_versions

        self.config = config
        self.versions = versions or registry_versions(config, None)
        self._models: dict[str, tuple[Any, Any, bool]] = {}
        self._retriever: Any = None
        self._lock = threading.Lock()  # one question at a time: the models are not shared between threads

    # --- which arms ---------------------------------------------------------------------------------------------

    def compare_arms(self) -> tuple[list[Arm], list[str]]:
        """The configured arms (evaluation.arms) that can run, and notes on those left out."""
        return plan_arms(self.config, self.versions)

    def arm(self, model: str, rag: bool) -> Arm:
        """One arm: ``model`` is base, ft (the challenger) or champion."""
        if model == "ft" and self.versions.challenger is None:
            raise EvaluationSetupError(f"no registered challenger in {self.config.registry.model_name!r} "
                                       f"({self.config.mlflow_tracking_uri}); run `ptwiki-llm run` to train one")
        if model == "champion" and self.versions.champion is None:
            raise EvaluationSetupError(f"no champion in {self.config.registry.model_name!r} yet "
                                       "(`ptwiki-llm models promote VERSION --reason ...` names one)")
        return arm_of(f"{model}+rag" if rag else model)

    # --- what is loaded once ------------------------------------------------------------------------------------

    def model(self, name: str) -> tuple[Any, Any, bool]:
        """(model, tokenizer, bf16 autocast) of an arm's model, loaded on first use."""
        if name not in self._models:
            from ptwiki_llm.models.runtime import bf16_autocast

            model, tokenizer = load_arm_model(self.config, name, self.versions)
            weight = next(model.parameters())
            autocast = weight.dtype.is_floating_point and str(weight.dtype) == "torch.float32" and bf16_autocast(
                self.config.rag.answer.bf16_autocast, weight.device.type)
            self._models[name] = (model, tokenizer, autocast)
        return self._models[name]

    def retriever(self) -> Any:
        if self._retriever is None:
            from ptwiki_llm.rag.pointer import current_collection
            from ptwiki_llm.rag.retrieval import open_retriever

            self._retriever = open_retriever(self.config, current_collection(self.config))
        return self._retriever

    def load(self, arms: Sequence[Arm]) -> None:
        """Load everything ``arms`` need now (the arena loads before its first question)."""
        for name in dict.fromkeys(a.model for a in arms):
            self.model(name)
        if any(a.rag for a in arms):
            self.retriever()

    def close(self) -> None:
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None
        self._models.clear()

    # --- answering ----------------------------------------------------------------------------------------------

    def answer(self, question: str, arms: Sequence[Arm], k: int | None = None, hybrid: bool = False,
               notes: Sequence[str] = ()) -> Comparison:
        """Every arm's answer to ``question``; RAG arms share one retrieval and show their evidence."""
        question = question.strip()
        if not question:
            raise ValueError("empty question")
        with self._lock:
            return self._answer(question, list(arms), k, hybrid, list(notes))

    def _answer(self, question: str, arms: list[Arm], k: int | None, hybrid: bool, notes: list[str]) -> Comparison:
        import torch

        started = time.perf_counter()
        cfg = self.config.rag.answer
        hits: list[Hit] = []
        relevance: list[float] = []
        sentences: SourceSentences | None = None
        mode = None
        not_found = False
        if any(a.rag for a in arms):
            retriever = self.retriever()
            mode = "hybrid" if hybrid else self.config.rag.retrieval.mode
            hits = retriever.retrieve(question, k=k, mode=mode)
            relevance = source_relevance(retriever.embedder, question, hits,
                                         self.config.rag.chunking.heading_in_embedding)
            not_found = not hits or (cfg.not_found_below is not None and max(relevance) < cfg.not_found_below)
            if not not_found and cfg.evidence_sentences:
                sentences = SourceSentences(retriever.embedder, hits)
        answers = []
        for arm in arms:
            t0 = time.perf_counter()
            label = model_label(arm.model, self.versions)
            if arm.rag and not_found:
                answers.append(ArmAnswer(arm.name, label, True, NOT_FOUND, None, hits, [], True,
                                         time.perf_counter() - t0))
                continue
            model, tokenizer, autocast = self.model(arm.model)
            device = next(model.parameters()).device.type
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                answer = answer_question(question, model, tokenizer, cfg, hits if arm.rag else None)
            evidence: list[Evidence] = []
            if arm.rag and sentences is not None and answer.generated is not None:
                evidence = sentences.best(question, answer.generated.text, cfg.evidence_sentences,
                                          len(answer.sources))
            answers.append(ArmAnswer(arm.name, label, arm.rag, answer.text, answer.generated, answer.sources,
                                     evidence, False, time.perf_counter() - t0))
        return Comparison(question, answers, hits, relevance, cfg.not_found_below, mode,
                          time.perf_counter() - started, self.versions, notes)
