"""Validate stage: the GX suite over a tiny corpus with one article of each failure kind.

``import great_expectations`` takes ~5 s, so one validation run is shared by the module.
"""

from __future__ import annotations

import json
import pickle
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptwiki_llm.config import ValidateConfig
from ptwiki_llm.data.article import ARTICLE_SCHEMA
from ptwiki_llm.data.features import compute_features, markup_per_kchar, portuguese_score
from ptwiki_llm.data.validate import (
    QUARANTINE_SCHEMA,
    ValidationFailed,
    ValidationReport,
    quarantined_ids,
    raise_if_failed,
    validate_articles,
    validate_features,
)
from tests.data.conftest import write_shard

# Set explicitly so a change of the defaults in config.py does not change what these tests mean.
CFG = ValidateConfig(
    min_text_chars=200,
    max_text_chars=1_000_000,
    max_markup_per_kchar=0.5,
    min_portuguese_score=0.18,
    max_failing_share=0.10,
    examples_in_error=5,
)

LISBOA = (
    "Lisboa é a capital e a maior cidade de Portugal, situada na margem norte do estuário do rio Tejo. "
    "A cidade é uma das mais antigas da Europa ocidental e foi governada por romanos, visigodos e "
    "mouros antes de ser conquistada em 1147. O terramoto de 1755 destruiu grande parte do centro "
    "histórico, que depois foi reconstruído segundo um plano do Marquês de Pombal. Hoje a região "
    "metropolitana tem cerca de três milhões de habitantes."
)
AMAZONAS = (
    "O rio Amazonas é o maior rio do mundo em volume de água e atravessa o Peru, a Colômbia e o Brasil. "
    "A sua bacia hidrográfica cobre cerca de sete milhões de quilómetros quadrados, a maior parte dela "
    "coberta pela floresta amazónica. Durante a estação das chuvas, o nível do rio pode subir mais de "
    "dez metros e inundar extensas áreas de várzea."
)
MACHADO = (
    "Machado de Assis foi um escritor brasileiro, considerado por muitos críticos o maior nome da "
    "literatura do país. Nasceu no Rio de Janeiro em 1839, filho de uma família pobre, e trabalhou como "
    "tipógrafo e revisor antes de se dedicar às letras. Entre as suas obras mais conhecidas estão os "
    "romances Memórias Póstumas de Brás Cubas e Dom Casmurro, publicados no fim do século XIX."
)
ESTRELA = (
    "A Serra da Estrela é a mais alta cadeia montanhosa de Portugal continental e está situada no centro "
    "do país. O seu ponto mais elevado, a Torre, atinge cerca de dois mil metros de altitude e fica coberto "
    "de neve durante parte do inverno. A região é conhecida pelo queijo feito com o leite das ovelhas que "
    "pastam nas encostas."
)
ENGLISH = (
    "The Amazon River in South America is the largest river by discharge volume of water in the world. "
    "Its headwaters were long thought to lie on Nevado Mismi, until a study placed them on the Mantaro "
    "River in Peru. Brazilians call the upper section the Solimões, and the river is known as the "
    "Amazon only after it meets the Rio Negro at Manaus, the largest city on its banks."
)
# Portuguese prose with the infobox and links the cleaner should have removed: 8 markup tokens.
COIMBRA_MARKUP = (
    "{{Info/Cidade\n| nome = Coimbra\n| país = [[Portugal]]\n}}\n"
    "Coimbra é uma cidade portuguesa situada na região do Centro, às margens do rio [[Mondego]]. "
    "A cidade foi a capital do reino durante mais de um século e é a sede de uma das universidades "
    "mais antigas da Europa. O centro histórico e a universidade foram classificados como Património "
    "Mundial em 2013.<ref>UNESCO</ref>"
)
SHORT = "A cidade é a capital do estado e fica no litoral."  # Portuguese enough, but too short
LISBOA_RESPACED = "  " + LISBOA.replace(". ", ".\n\n") + "\n"  # the same text once normalized

# (id, title, text) per shard. Shard 2 holds id 3, the lowest id with the Amazonas text, so id 11
# (read first) is the duplicate and id 3 the kept original.
SHARD_1 = [
    (10, "Lisboa", LISBOA),
    (11, "Amazonas", AMAZONAS),
    (12, "Amazon River", ENGLISH),
    (13, "Coimbra", COIMBRA_MARKUP),
    (14, "Cidade curta", SHORT),
]
SHARD_2 = [
    (20, "", ESTRELA),
    (21, "Lisboa (cópia)", LISBOA_RESPACED),
    (3, "Rio Amazonas", unicodedata.normalize("NFD", AMAZONAS)),
    (22, "Machado de Assis", MACHADO),
]

DUP = "expect_column_values_to_be_null(duplicate_of)"
PT = "expect_column_values_to_be_between(portuguese_score)"
MARKUP = "expect_column_values_to_be_between(markup_per_kchar)"
LENGTH = "expect_column_values_to_be_between(text_chars)"
TITLE = "expect_column_values_to_be_between(title_chars)"
HASH_UNIQUE = "expect_column_values_to_be_unique(text_sha256)"

EXPECTED_QUARANTINE = [
    (11, "Amazonas", DUP, "3"),
    (12, "Amazon River", PT, str(portuguese_score(ENGLISH))),
    (13, "Coimbra", MARKUP, str(markup_per_kchar(COIMBRA_MARKUP))),
    (14, "Cidade curta", LENGTH, str(len(SHORT))),
    (20, "", TITLE, "0"),
    (21, "Lisboa (cópia)", DUP, "10"),
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("articles")
    return [write_shard(folder / "part-0.parquet", SHARD_1), write_shard(folder / "part-1.parquet", SHARD_2)]


@pytest.fixture(scope="module")
def run(shards: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationReport, Path]:
    out_dir = tmp_path_factory.mktemp("validated")
    return validate_articles(shards, out_dir, CFG), out_dir


def test_fixture_texts_fail_only_what_they_are_meant_to() -> None:
    # guards the corpus itself: a good text that slipped below a threshold would blur every test
    for text in (LISBOA, AMAZONAS, MACHADO, ESTRELA, COIMBRA_MARKUP, SHORT):
        assert portuguese_score(text) >= CFG.min_portuguese_score + 0.1
    for text in (LISBOA, AMAZONAS, MACHADO, ESTRELA, ENGLISH, COIMBRA_MARKUP):
        assert len(text) >= CFG.min_text_chars
    assert markup_per_kchar(COIMBRA_MARKUP) > CFG.max_markup_per_kchar


def test_quarantine_contents(run: tuple[ValidationReport, Path]) -> None:
    report, out_dir = run
    table = pq.read_table(report.quarantine_path)
    assert table.schema.equals(QUARANTINE_SCHEMA)
    assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED_QUARANTINE
    assert quarantined_ids(out_dir) == {11, 12, 13, 14, 20, 21}


def test_report_counts(run: tuple[ValidationReport, Path]) -> None:
    report, _ = run
    assert report.total == 9
    assert report.quarantined == 6
    assert report.kept == 3  # 3 (first Amazonas copy), 10 (first Lisboa copy), 22
    assert report.total == report.kept + report.quarantined
    assert report.quarantined_share == pytest.approx(6 / 9)
    assert report.passed is False
    assert report.failures_by_expectation == {
        "expect_column_values_to_not_be_null(id)": 0,
        "expect_column_values_to_be_unique(id)": 0,
        TITLE: 1,
        LENGTH: 1,
        MARKUP: 1,
        PT: 1,
        DUP: 2,
    }
    assert report.examples[DUP] == [11, 21]
    assert report.examples[PT] == [12]
    assert report.examples["expect_column_values_to_be_unique(id)"] == []
    # every copy of both texts (3, 10, 11, 21) = the 2 quarantined later copies + 2 originals
    assert report.reported_only == {HASH_UNIQUE: 4}


def test_outputs_on_disk(run: tuple[ValidationReport, Path]) -> None:
    report, out_dir = run
    assert report.features_path == out_dir / "features.parquet"
    features = pq.read_table(report.features_path).to_pandas()
    assert sorted(features["id"]) == [3, 10, 11, 12, 13, 14, 20, 21, 22]
    assert features.set_index("id")["duplicate_of"].dropna().to_dict() == {11: 3, 21: 10}

    assert report.data_docs_dir == out_dir / "data_docs"
    index = report.data_docs_dir / "index.html"
    assert index.is_file()
    assert "ptwiki_articles" in index.read_text(encoding="utf-8")
    assert list((report.data_docs_dir / "validations").rglob("*.html"))


def test_validation_json(run: tuple[ValidationReport, Path]) -> None:
    report, out_dir = run
    assert report.report_path == out_dir / "validation.json"
    data = json.loads(report.report_path.read_text(encoding="utf-8"))

    summary = data["summary"]
    assert summary["total"] == 9 and summary["passed"] == 3 and summary["quarantined"] == 6
    assert summary["total"] == summary["passed"] + summary["quarantined"]
    assert summary["quarantined_share"] == pytest.approx(6 / 9)
    assert summary["step_passed"] is False
    assert summary["failures_by_expectation"] == report.failures_by_expectation
    assert summary["examples"] == {k: list(v) for k, v in report.examples.items()}
    assert summary["reported_only"] == {HASH_UNIQUE: 4}
    assert summary["config"]["min_portuguese_score"] == CFG.min_portuguese_score

    gx_result = data["gx_result"]
    assert gx_result["success"] is False
    assert gx_result["suite_name"] == "ptwiki_articles"
    assert gx_result["statistics"]["evaluated_expectations"] == 8
    by_label = {
        f"{r['expectation_config']['type']}({r['expectation_config']['kwargs']['column']})": r
        for r in gx_result["results"]
    }
    assert by_label[PT]["result"]["unexpected_count"] == 1
    assert by_label[PT]["expectation_config"]["kwargs"]["min_value"] == CFG.min_portuguese_score
    assert by_label[HASH_UNIQUE]["expectation_config"]["meta"]["quarantine"] is False
    assert by_label["expect_column_values_to_be_unique(id)"]["success"] is True


def test_raise_if_failed_names_the_worst_expectation(run: tuple[ValidationReport, Path]) -> None:
    report, _ = run
    with pytest.raises(ValidationFailed) as caught:
        raise_if_failed(report)
    message = str(caught.value)
    assert caught.value.report is report
    assert DUP in message and "11, 21" in message  # the most frequent failure and its ids
    assert "66.67%" in message and "10.00%" in message
    assert str(report.quarantine_path) in message
    # a step runner may ship the exception to another process
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_share_at_the_threshold_passes(run: tuple[ValidationReport, Path], tmp_path: Path) -> None:
    report, _ = run
    features = pq.read_table(report.features_path).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    lenient = CFG.model_copy(update={"max_failing_share": 6 / 9})

    again = validate_features(features, tmp_path, lenient)

    assert again.quarantined == 6 and again.passed is True
    raise_if_failed(again)  # does not raise


def test_null_and_repeated_ids_are_quarantined(shards: list[Path], tmp_path: Path) -> None:
    features = compute_features(shards).iloc[[0, 6, 8]].reset_index(drop=True)  # ids 10, 21, 22
    features["id"] = pd.array([None, 22, 22], dtype="Int64")
    features["duplicate_of"] = pd.array([None, None, None], dtype="Int64")

    report = validate_features(features, tmp_path, CFG)

    rows = [tuple(r.values()) for r in pq.read_table(report.quarantine_path).to_pylist()]
    assert rows == [
        (None, "Lisboa", "expect_column_values_to_not_be_null(id)", "null"),
        (22, "Lisboa (cópia)", "expect_column_values_to_be_unique(id)", "22"),
        (22, "Machado de Assis", "expect_column_values_to_be_unique(id)", "22"),
    ]
    assert report.quarantined == 3  # rows, not distinct ids
    assert quarantined_ids(tmp_path) == {22}
    assert report.reported_only == {HASH_UNIQUE: 2}  # 10 and 21 still share a text


def test_empty_corpus_fails_with_a_pointer_to_the_skips(tmp_path: Path) -> None:
    shard = tmp_path / "part-00000.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=ARTICLE_SCHEMA), shard)
    report = validate_articles([shard], tmp_path / "out", CFG)
    assert report.total == 0
    with pytest.raises(ValidationFailed, match="no articles to validate"):
        raise_if_failed(report)
