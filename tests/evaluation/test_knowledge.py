"""Knowledge injection on small SQuAD fixtures: halves by document, fine-tuning texts, QA items and choices, bad input,
and language-model scoring that never sees the prompt template."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ptwiki_llm.config import Config, KnowledgeConfig
from ptwiki_llm.data.format import PROMPT_NO_INPUT, PROMPT_WITH_INPUT
from ptwiki_llm.data.knowledge import HELDOUT, SEEN, KnowledgeFileError, select_documents, write_knowledge
from ptwiki_llm.evaluation.qa import QaFileError, answer_type, load_knowledge_task
from ptwiki_llm.training.data import load_splits, raw_heldout_texts
from tests.training.conftest import examples, write_formatted

CITIES = [("Lisboa", "Tejo", 1147, "Afonso Henriques"), ("Porto", "Douro", 1123, "Dona Teresa"),
          ("Coimbra", "Mondego", 1064, "Fernando Magno"), ("Faro", "Formosa", 1249, "Afonso Terceiro"),
          ("Braga", "Este", 1070, "Pedro Mendes"), ("Évora", "Degebe", 1165, "Geraldo Sem Pavor")]


def _document(city: str, river: str, year: int, person: str, unanswerable: bool = False) -> dict:
    context = f"{city} fica junto ao rio {river}. A cidade foi conquistada em {year} por {person}."
    qas = [{"id": f"{city}-rio", "question": f"Junto a que rio fica {city}?",
            "answers": [{"text": river, "answer_start": context.index(river)}]},
           {"id": f"{city}-ano", "question": f"Em que ano foi {city} conquistada?",
            "answers": [{"text": str(year), "answer_start": 0}]},  # offset off: counted, tolerated
           {"id": f"{city}-quem", "question": f"Quem conquistou {city}?",
            "answers": [{"text": person, "answer_start": context.index(person)}]}]
    if unanswerable:
        qas.append({"id": f"{city}-hab", "question": f"Quantos habitantes tem {city}?", "answers": [],
                    "is_impossible": True})
    return {"title": city.upper(), "paragraphs": [{"context": context, "qas": qas}]}


def squad_file(folder: Path, documents: list[dict], name: str = "kqa.json.gz") -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(json.dumps({"version": "v2.0", "data": documents}).encode()))
    return path


@pytest.fixture
def kqa(tmp_path) -> Path:
    return squad_file(tmp_path, [_document(*c, unanswerable=i == 0) for i, c in enumerate(CITIES)])


def test_documents_split_into_halves_by_document(kqa):
    cfg = KnowledgeConfig(file=str(kqa), max_documents=None, seen_share=0.5)
    documents = select_documents(kqa, cfg, seed=1)
    assert sorted(d.half for d in documents) == [HELDOUT] * 3 + [SEEN] * 3
    assert select_documents(kqa, cfg, seed=1) == documents  # seeded
    assert {d.title for d in select_documents(kqa, cfg.model_copy(update={"max_documents": 4}), 1)} < {
        d.title for d in documents}


def test_seen_documents_join_every_fine_tuning_sample_and_heldout_ones_never(kqa, tmp_path):
    texts = examples()
    formatted = write_formatted(tmp_path / "formatted", texts[:-4], texts[-4:])
    manifest = write_knowledge(kqa, KnowledgeConfig(file=str(kqa), max_documents=None, repeats=2), 1,
                               Path(formatted.dir))
    formatted = formatted.model_copy(update={"knowledge": str(Path(formatted.dir) / "knowledge.json"),
                                             "knowledge_train": str(Path(formatted.dir) / "knowledge_train.jsonl")})
    train, _ = load_splits(formatted, 3, 2, seed=0)  # a sample of 3 wiki examples, then the knowledge texts
    seen = [d for d in manifest["documents"] if d["half"] == SEEN]
    heldout = [d for d in manifest["documents"] if d["half"] == HELDOUT]
    assert len(train) == 3 + 2 * len(seen) and manifest["training_texts"] == 2 * len(seen)
    joined = "\n".join(train)
    assert all(d["title"] in joined for d in seen) and not any(d["title"] in joined for d in heldout)
    assert manifest["counts"][SEEN]["documents"] == 3 and sum(c["unanswerable"] for c in manifest["counts"].values())

    config = Config()
    config.evaluation.qa.distractors = 2
    task = load_knowledge_task(config, formatted)
    assert task.counts["skipped_unanswerable"] == 1 and task.counts["offset_mismatches"] == 6
    assert task.counts["evaluated_seen"] == 9 and task.counts["evaluated_heldout"] == 9
    for item in task.items:
        gold, *distractors = task.choices[item.qid]
        assert gold == item.answers[0] and len(distractors) == 2 and gold not in distractors
        assert {answer_type(d) for d in distractors} == {answer_type(gold)}  # same type: years with years
    assert len(task.rows) == 6  # both halves are indexed for RAG
    config.evaluation.qa.max_questions = 2
    assert load_knowledge_task(config, formatted).counts["evaluated"] == 4  # a seeded sample per half


def test_bad_knowledge_files_say_what_to_change(tmp_path):
    none_answerable = squad_file(tmp_path, [{"title": "A", "paragraphs": [{"context": "x", "qas": [
        {"id": "1", "question": "?", "answers": [], "is_impossible": True}]}]}] * 3, "empty.json.gz")
    with pytest.raises(KnowledgeFileError, match=r"data\.knowledge\.file"):
        select_documents(none_answerable, KnowledgeConfig(), 1)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(KnowledgeFileError, match="not a readable SQuAD"):
        select_documents(broken, KnowledgeConfig(), 1)
    formatted = write_formatted(tmp_path / "f", examples(), examples(1))
    with pytest.raises(QaFileError, match=r"data\.knowledge\.file"):
        load_knowledge_task(Config(), formatted)  # the format step wrote no knowledge documents


def test_raw_text_scoring_sees_no_template_tokens(tmp_path):
    """lm (and the train step's held-out numbers) score eval_raw: no preamble, no ### headers reach the tokenizer."""
    import torch

    from ptwiki_llm.evaluation.arms import arm_of
    from ptwiki_llm.evaluation.run import prepare_items, run_lm

    texts = examples()
    formatted = write_formatted(tmp_path / "formatted", texts[:-4], texts[-4:])
    config = Config()
    config.evaluation.tasks = ["lm"]
    items = prepare_items(config, None, formatted)
    assert items.lm_texts == raw_heldout_texts(formatted, config.evaluation.lm.max_texts,
                                               config.evaluation.lm.max_chars, config.seed)

    seen: list[str] = []

    class Tokenizer:
        bos_token_id, eos_token_id, pad_token_id = None, 0, 0

        def __call__(self, text: str, **_: object) -> dict:
            seen.append(text)
            return {"input_ids": [1 + (ord(c) % 50) for c in text]}

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(64, 64)

        def forward(self, input_ids):
            return type("Out", (), {"logits": self.embed(input_ids)})()

    rows = run_lm(Model(), Tokenizer(), arm_of("base"), items.lm_texts, config, "lm", show_progress=False)
    assert len(rows) == len(items.lm_texts) > 0
    scored = [t for t in seen if t != "a"]  # "a": the start-token probe of heldout_metrics
    assert scored == items.lm_texts
    markers = ["###", "Instrução", "Resposta:", PROMPT_NO_INPUT.split("\n")[0], PROMPT_WITH_INPUT.split("\n")[0]]
    assert not any(marker in text for text in scored for marker in markers)
    assert any("###" in text for text in texts)  # the formatted examples do hold the template
