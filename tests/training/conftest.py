"""Fixtures for training/registry tests: the real SmolLM2 staged once per session, a small formatted split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ptwiki_llm.config import Config, load_config
from ptwiki_llm.data.format import FormattedData, render
from tests.conftest import pinned_environ

REPO = Path(__file__).resolve().parents[2]

_FACTS = [
    ("Lisboa", "Lisboa é a capital e a maior cidade de Portugal, situada na foz do rio Tejo."),
    ("Porto", "O Porto é uma cidade portuguesa conhecida pelo vinho do Porto e pela Ribeira."),
    ("Brasil", "O Brasil é o maior país da América do Sul e tem o português como língua oficial."),
    ("Amazonas", "O rio Amazonas atravessa o norte do Brasil e é o rio mais caudaloso do mundo."),
    ("Coimbra", "Coimbra é uma cidade universitária de Portugal, às margens do rio Mondego."),
    ("Recife", "Recife é a capital do estado de Pernambuco, no Nordeste do Brasil."),
    ("Luanda", "Luanda é a capital de Angola e fica na costa do oceano Atlântico."),
    ("Maputo", "Maputo é a capital de Moçambique, no sul do país, junto à baía de Maputo."),
]


def examples(copies: int = 3) -> list[str]:
    texts = []
    for round_ in range(copies):
        for title, fact in _FACTS:
            if round_ % 2:
                texts.append(render("Qual é o título do artigo da Wikipédia que começa com o texto a seguir?",
                                    title, fact))
            else:
                texts.append(render(f"Explique o que é {title}.", fact))
    return texts


def write_formatted(folder: Path, train: list[str], evaluation: list[str]) -> FormattedData:
    """A format step's output: train/eval examples, and eval_raw (the eval examples' answers: untemplated text)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = [text.rsplit("### Resposta:\n", 1)[-1] for text in evaluation]
    for name, texts in (("train", train), ("eval", evaluation), ("eval_raw", raw)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                                      for t in texts), encoding="utf-8")
    from ptwiki_llm.provenance import sha256_file

    summary = {"files": {name: {"path": f"{name}.jsonl", "sha256": sha256_file(folder / f"{name}.jsonl")}
                         for name in ("train", "eval", "eval_raw")}}
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return FormattedData.from_summary(folder, summary, dataset_sha256="d" * 64)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory, asset) -> Path:
    """The GGUF converted once for the whole session (about 10 s)."""
    from ptwiki_llm.models.staging import stage_model

    asset("models/smollm2-135m-instruct-gguf")
    store = tmp_path_factory.mktemp("model-store")
    stage_model(tiny_config(tmp_path_factory.mktemp("stage-workdir"), store))
    return store


def tiny_config(workdir: Path, store: Path, **train: Any) -> Config:
    """The local preset shrunk to seconds: short sequences, a few steps, no held-out pass unless asked."""
    settings = {"max_steps": 2, "max_seq_length": 32, "per_device_batch_size": 1, "eval_steps": 1000,
                "save_steps": 1000, "max_train_examples": None, "max_eval_examples": 2, "heldout_eval": False,
                "learning_rate": 5e-3, "warmup_steps": 0}
    settings.update(train)
    return load_config(REPO / "configs" / "local.yaml", {
        "workdir": str(workdir),
        "models": {"store": str(store), "device": "cpu"},
        "train": settings,
    }, environ=pinned_environ())


@pytest.fixture
def formatted(tmp_path) -> FormattedData:
    texts = examples()
    return write_formatted(tmp_path / "formatted", texts[:-4], texts[-4:])
