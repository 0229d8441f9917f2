"""EnterpriseHtmlSource: reading snapshot archives, bad input, and the real 5,000-article sample."""

from __future__ import annotations

import functools
import gzip
import io
import json
import pickle
import re
import tarfile
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from ptwiki_llm.data.article import Article, Skipped
from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord
from ptwiki_llm.data.sources.enterprise_html import EnterpriseHtmlSource, natural_key

SAMPLE = "data/ptwiki_namespace_0_sample.tar.gz"
OPTIONS = ConvertOptions()


def article_json(page_id: int, title: str, html: str | None = None, namespace: int = 0, **extra: Any) -> dict:
    body = html if html is not None else f"<div><p>Texto do artigo {title}.</p></div>"
    record = {
        "name": title,
        "identifier": page_id,
        "version": {"identifier": page_id * 10},
        "url": f"https://pt.wikipedia.org/wiki/{title.replace(' ', '_')}",
        "namespace": {"identifier": namespace},
        "in_language": {"identifier": "pt"},
        "article_body": {"html": body},
    }
    record.update(extra)
    return record


def ndjson(*records: dict | str) -> bytes:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def convert_all(source: EnterpriseHtmlSource, options: ConvertOptions = OPTIONS) -> list[Article | Skipped]:
    return [source.convert(record, options) for record in source.records()]


# --- reading -------------------------------------------------------------------------------------


def test_tar_members_read_in_natural_name_order(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "snap.tar.gz",
        {
            "ptwiki_namespace_0_10.ndjson": ndjson(article_json(10, "Dez")),
            "README.txt": b"not articles",
            "ptwiki_namespace_0_2.ndjson": ndjson(article_json(2, "Dois"), article_json(3, "Tres")),
            "ptwiki_namespace_0_0.ndjson": ndjson(article_json(1, "Um")),
        },
    )
    source = EnterpriseHtmlSource(archive)
    assert source.files() == [archive]
    records = list(source.records())
    assert [r.position for r in records] == [
        "ptwiki_namespace_0_0.ndjson:line 1",
        "ptwiki_namespace_0_2.ndjson:line 1",
        "ptwiki_namespace_0_2.ndjson:line 2",
        "ptwiki_namespace_0_10.ndjson:line 1",
    ]
    assert all(isinstance(r.payload, bytes) for r in records)  # JSON is parsed in the workers
    assert [a.title for a in convert_all(source)] == ["Um", "Dois", "Tres", "Dez"]


def test_natural_key_orders_numbers_numerically() -> None:
    names = ["x_10.ndjson", "x_2.ndjson", "x_1.ndjson", "a/x_0.ndjson"]
    assert sorted(names, key=natural_key) == ["a/x_0.ndjson", "x_1.ndjson", "x_2.ndjson", "x_10.ndjson"]


def test_blank_lines_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "part.ndjson"
    path.write_bytes(ndjson(article_json(1, "Um"), "", "   ", article_json(2, "Dois")))
    assert [r.position for r in EnterpriseHtmlSource(path).records()] == ["part.ndjson:line 1", "part.ndjson:line 4"]


def test_plain_gzip_ndjson_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "b_2.ndjson.gz").write_bytes(gzip.compress(ndjson(article_json(2, "Dois"))))
    (folder / "b_1.ndjson").write_bytes(ndjson(article_json(1, "Um")))
    write_tar(folder / "c.tar.gz", {"c_0.ndjson": ndjson(article_json(3, "Tres"))})
    write_tar(folder / "a_docs.tar.gz", {"README.md": b"# snapshot\n"})  # no articles: not an error here
    (folder / "notes.txt").write_text("ignored")
    source = EnterpriseHtmlSource(folder)
    assert [p.name for p in source.files()] == ["a_docs.tar.gz", "b_1.ndjson", "b_2.ndjson.gz", "c.tar.gz"]
    assert [a.id for a in convert_all(source)] == [1, 2, 3]


# --- convert -------------------------------------------------------------------------------------


def test_convert_builds_article_from_enterprise_fields() -> None:
    html = (
        '<div id="mw-content-text"><table class="infobox_v2"><tr><td>FIPS 40550</td></tr></table>'
        '<p>Lago Azul é uma cidade.<sup class="reference"><a>[1]</a></sup></p>'
        '<h2><span class="mw-headline">História</span></h2><p>Antiga.</p></div>'
    )
    line = ndjson(article_json(7, "Lago Azul", html))
    result = EnterpriseHtmlSource.convert(RawRecord("p.ndjson:line 1", line), OPTIONS)
    assert isinstance(result, Article)
    assert (result.id, result.revision, result.title, result.source) == (7, 70, "Lago Azul", "enterprise_html")
    assert result.url == "https://pt.wikipedia.org/wiki/Lago_Azul"
    assert result.text == "Lago Azul é uma cidade.\n\nHistória\n\nAntiga."
    assert [s.heading for s in result.sections] == ["", "História"]


def test_url_falls_back_to_wiki_base_and_revision_is_optional() -> None:
    record = article_json(7, "São Paulo (cidade)")
    del record["url"], record["version"]
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 1", ndjson(record)), OPTIONS)
    assert isinstance(result, Article)
    assert result.url == "https://pt.wikipedia.org/wiki/S%C3%A3o_Paulo_(cidade)"
    assert result.revision is None


def test_malformed_line_skipped_and_the_others_kept(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "snap.tar.gz",
        {"p_0.ndjson": ndjson(article_json(1, "Um"), '{"name": "Quebrado", "identifier": 2,', article_json(3, "Tres"))},
    )
    results = convert_all(EnterpriseHtmlSource(archive))
    assert [type(r).__name__ for r in results] == ["Article", "Skipped", "Article"]
    bad = results[1]
    assert isinstance(bad, Skipped)
    assert bad.reason == "malformed_record"
    assert bad.position == "p_0.ndjson:line 2"
    assert "JSON" in bad.detail


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"name": "Sem id", "article_body": {"html": "<p>x</p>"}}, "identifier"),
        ({"identifier": 5, "article_body": {"html": "<p>x</p>"}}, "name"),
        ({"identifier": 5, "name": "Sem corpo"}, "article_body.html"),
        ({"identifier": 5, "name": "Corpo errado", "article_body": "<p>x</p>"}, "article_body.html"),
        ({"identifier": True, "name": "Id booleano", "article_body": {"html": "<p>x</p>"}}, "identifier"),
    ],
)
def test_missing_required_fields(record: dict, field: str) -> None:
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 9", ndjson(record)), OPTIONS)
    assert isinstance(result, Skipped)
    assert result.reason == "malformed_record"
    assert field in result.detail
    assert result.position == "p:line 9"


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"texto"', b"\xff\xfe{", b"null"])
def test_json_that_is_not_an_article_object(payload: bytes) -> None:
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 1", payload), OPTIONS)
    assert isinstance(result, Skipped) and result.reason == "malformed_record"


def test_other_namespaces_skipped() -> None:
    line = ndjson(article_json(9, "Predefinição:Info", namespace=10))
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 1", line), OPTIONS)
    assert isinstance(result, Skipped)
    assert (result.reason, result.id, result.title) == ("not_namespace_0", 9, "Predefinição:Info")


def test_too_large_and_empty() -> None:
    big = ndjson(article_json(1, "Grande", "<p>" + "á" * 600 + "</p>"))
    small = ConvertOptions(max_article_bytes=1000)
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 1", big), small)
    assert isinstance(result, Skipped) and result.reason == "too_large"  # 1,200 bytes, only 607 characters

    only_boxes = ndjson(article_json(2, "Vazio", '<table class="infobox"><tr><td>FIPS</td></tr></table>'))
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 2", only_boxes), OPTIONS)
    assert isinstance(result, Skipped)
    assert (result.reason, result.id, result.title) == ("empty", 2, "Vazio")

    short = ndjson(article_json(3, "Curto", "<p>Curto.</p>"))
    result = EnterpriseHtmlSource.convert(RawRecord("p:line 3", short), ConvertOptions(min_text_chars=50))
    assert isinstance(result, Skipped) and result.reason == "empty"


def test_convert_is_picklable_for_workers() -> None:
    fn = pickle.loads(pickle.dumps(functools.partial(EnterpriseHtmlSource.convert, options=OPTIONS)))
    result = fn(RawRecord("p:line 1", ndjson(article_json(1, "Um"))))
    assert isinstance(result, Article) and result.title == "Um"


# --- broken input --------------------------------------------------------------------------------


def _big_archive(tmp_path: Path) -> tuple[Path, bytes]:
    # Incompressible-ish text so the cut lands well inside the member data, not in the tar padding.
    records = [article_json(i, f"Artigo {i}", f"<p>{i} {'x' * (i % 97)} {hash(i)}</p>") for i in range(1, 3000)]
    archive = write_tar(tmp_path / "full.tar.gz", {"p_0.ndjson": ndjson(*records), "p_1.ndjson": ndjson(*records)})
    return archive, archive.read_bytes()


def test_truncated_archive_raises_corrupt_input_naming_file_and_position(tmp_path: Path) -> None:
    _, data = _big_archive(tmp_path)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptInputError) as caught:
        list(EnterpriseHtmlSource(cut).records())
    error = caught.value
    assert error.path == str(cut)
    assert error.position and "p_1.ndjson" in error.position
    assert "cut.tar.gz" in str(error) and "truncated or corrupt" in str(error)


def test_corrupted_bytes_inside_archive_raise_corrupt_input(tmp_path: Path) -> None:
    _, data = _big_archive(tmp_path)
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = bytes(64)
    path = tmp_path / "damaged.tar.gz"
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptInputError):
        list(EnterpriseHtmlSource(path).records())


def test_truncated_plain_gzip_reports_the_line(tmp_path: Path) -> None:
    records = [article_json(i, f"Artigo {i}", f"<p>{hash(i)} {hash(-i)}</p>") for i in range(1, 4000)]
    data = gzip.compress(ndjson(*records))
    path = tmp_path / "part.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    read = 0
    with pytest.raises(CorruptInputError) as caught:
        for _ in EnterpriseHtmlSource(path).records():
            read += 1
    assert read > 0
    assert caught.value.position == f"part.ndjson.gz:line {read + 1}"


def test_garbage_with_tar_name_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "snap.tar.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(CorruptInputError):
        list(EnterpriseHtmlSource(path).records())


def test_empty_archive(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError):
        list(EnterpriseHtmlSource(write_tar(tmp_path / "none.tar.gz", {})).records())


def test_archive_without_ndjson_members(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "docs.tar.gz", {"README.md": b"# snapshot\n", "x.json": b"{}"})
    with pytest.raises(EmptyInputError, match=r"no \.ndjson members"):
        list(EnterpriseHtmlSource(archive).records())


def test_archive_with_only_blank_lines(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "blank.tar.gz", {"p_0.ndjson": b"\n\n  \n", "p_1.ndjson": b""})
    with pytest.raises(EmptyInputError):
        list(EnterpriseHtmlSource(archive).records())


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError):
        EnterpriseHtmlSource(tmp_path).files()


# --- the real sample -----------------------------------------------------------------------------

# What the cleaner must not leave behind, on pages where the source has none of it either.
LEFTOVERS = re.compile(r"<[a-zA-Z/][^>]*>|\[editar|↑|\[\d+\]|\[\[|\{\{|\}\}|<ref|\{\||\|-|é um esboço|Coordenadas:")


@pytest.fixture(scope="module")
def sample_articles(asset) -> list[Article | Skipped]:
    source = EnterpriseHtmlSource(asset(SAMPLE))
    return [source.convert(record, OPTIONS) for record in islice(source.records(), 50)]


def test_sample_first_articles_are_clean(sample_articles: list[Article | Skipped]) -> None:
    articles = [a for a in sample_articles if isinstance(a, Article)]
    assert len(articles) >= 48
    for article in articles:
        assert article.source == "enterprise_html" and article.revision and article.url.startswith("https://")
        assert not LEFTOVERS.search(article.text), (article.title, LEFTOVERS.search(article.text))
        assert all(s.text for s in article.sections)
        headings = {s.heading for s in article.sections}
        assert not headings & {"Referências", "Ligações externas", "Ver também", "Índice", "Notas"}


def test_sample_lake_oswego(sample_articles: list[Article | Skipped]) -> None:
    lake = sample_articles[0]
    assert isinstance(lake, Article)
    assert (lake.id, lake.revision, lake.title) == (1413670, 40554370, "Lake Oswego")
    assert lake.sections[0].heading == ""
    assert lake.sections[0].text.startswith("Lake Oswego é uma cidade localizada no estado norte-americano de Oregon")
    assert [s.heading for s in lake.sections] == ["", "Demografia", "Geografia", "Localidades na vizinhança"]
    assert "Segundo o censo norte-americano de 2000, a sua população era de 35.278 habitantes." in lake.text
    for gone in (
        "45° 24'",  # coordinates
        "código FIPS",  # infobox
        "Tipo de localidade",  # infobox
        "Census 2000 Summary File 1",  # Referências
        "city-data.com",  # Ligações externas
        "esboço",  # stub notice
        "Durham (5 km)",  # positioned diagram labels
        "editar",
    ):
        assert gone not in lake.text, gone
