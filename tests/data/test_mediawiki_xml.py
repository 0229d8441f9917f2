"""MediaWikiXmlSource: reading plain/bz2/multistream dumps, skip reasons, and broken input."""

from __future__ import annotations

import bz2
import pickle
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from ptwiki_llm.data.article import Article, Skipped
from ptwiki_llm.data.errors import CorruptInputError, EmptyInputError, IngestError
from ptwiki_llm.data.sources.base import ConvertOptions, RawRecord
from ptwiki_llm.data.sources.mediawiki_xml import MediaWikiXmlSource

BERLIM = "data/ptwiki_dbpedia_minidump_berlim.xml.bz2"
OPTIONS = ConvertOptions()


def header(version: str = "0.11") -> str:
    ns = f"http://www.mediawiki.org/xml/export-{version}/"
    return (
        f'<mediawiki xmlns="{ns}" version="{version}" xml:lang="pt">\n'
        "  <siteinfo>\n    <sitename>Wikipédia</sitename>\n    <dbname>ptwiki</dbname>\n  </siteinfo>\n"
    )


FOOTER = "</mediawiki>\n"


def page(
    page_id: int,
    title: str,
    text: str,
    ns: int = 0,
    rev_id: int | None = None,
    redirect: str | None = None,
) -> str:
    redirect_el = f"    <redirect title={quoteattr(redirect)} />\n" if redirect else ""
    return (
        "  <page>\n"
        f"    <title>{escape(title)}</title>\n"
        f"    <ns>{ns}</ns>\n"
        f"    <id>{page_id}</id>\n"
        f"{redirect_el}"
        "    <revision>\n"
        f"      <id>{rev_id if rev_id is not None else page_id * 10}</id>\n"
        "      <timestamp>2024-01-01T00:00:00Z</timestamp>\n"
        "      <model>wikitext</model>\n"
        f'      <text bytes="{len(text.encode())}" xml:space="preserve">{escape(text)}</text>\n'
        "    </revision>\n"
        "  </page>\n"
    )


def dump(*pages: str, version: str = "0.11") -> str:
    return header(version) + "".join(pages) + FOOTER


def write(tmp_path: Path, name: str, xml: str, compress: bool = False) -> Path:
    path = tmp_path / name
    data = xml.encode("utf-8")
    path.write_bytes(bz2.compress(data) if compress else data)
    return path


def read_all(path: Path) -> list[Article | Skipped]:
    source = MediaWikiXmlSource(path)
    return [source.convert(record, OPTIONS) for record in source.records()]


ARTICLE_TEXT = "'''Lisboa''' é a [[capital]] de [[Portugal]].<ref>x</ref>\n== História ==\nFundada há muito."


def test_reads_pages_and_converts(tmp_path: Path) -> None:
    path = write(tmp_path, "d.xml", dump(page(7, "Lisboa (cidade)", ARTICLE_TEXT, rev_id=99)))
    source = MediaWikiXmlSource(path)
    assert source.kind == "mediawiki_xml"
    assert source.files() == [path]
    [record] = list(source.records())
    assert record.payload == (0, 7, 99, "Lisboa (cidade)", False, ARTICLE_TEXT)
    assert record.position == "page 1 (line 6)"
    article = source.convert(record, OPTIONS)
    assert isinstance(article, Article)
    assert (article.id, article.revision, article.title, article.source) == (7, 99, "Lisboa (cidade)", "mediawiki_xml")
    assert article.url == "https://pt.wikipedia.org/wiki/Lisboa_(cidade)"
    assert [(s.heading, s.level, s.text) for s in article.sections] == [
        ("", 1, "Lisboa é a capital de Portugal."),
        ("História", 2, "Fundada há muito."),
    ]
    assert article.text == "Lisboa é a capital de Portugal.\n\nHistória\n\nFundada há muito."


@pytest.mark.parametrize("version", ["0.10", "0.11"])
def test_export_namespace_version_does_not_matter(tmp_path: Path, version: str) -> None:
    path = write(tmp_path, "d.xml", dump(page(1, "A", "Texto a."), version=version))
    assert [r.payload[:4] for r in MediaWikiXmlSource(path).records()] == [(0, 1, 10, "A")]


def test_no_namespace_at_all(tmp_path: Path) -> None:
    xml = "<mediawiki>" + page(3, "C", "Texto c.") + "</mediawiki>"
    path = write(tmp_path, "d.xml", xml)
    assert [r.payload[1] for r in MediaWikiXmlSource(path).records()] == [3]


def test_compression_is_decided_by_magic_bytes(tmp_path: Path) -> None:
    xml = dump(page(1, "A", "Texto a."), page(2, "B", "Texto b."))
    bz2_named_xml = write(tmp_path, "looks-plain.xml", xml, compress=True)
    plain_named_bz2 = write(tmp_path, "looks-compressed.xml.bz2", xml)
    for path in (bz2_named_xml, plain_named_bz2):
        assert [r.payload[3] for r in MediaWikiXmlSource(path).records()] == ["A", "B"]


def test_multistream_bz2_is_read_to_the_end(tmp_path: Path) -> None:
    # Like pages-articles-multistream: header stream, streams of pages, footer stream.
    streams = [
        header(),
        page(1, "A", "Texto a.") + page(2, "B", "Texto b."),
        page(3, "C", "Texto c."),
        FOOTER,
    ]
    path = tmp_path / "multi.xml.bz2"
    path.write_bytes(b"".join(bz2.compress(s.encode()) for s in streams))
    results = read_all(path)
    assert [r.title for r in results] == ["A", "B", "C"]
    assert all(isinstance(r, Article) for r in results)


def test_skip_reasons(tmp_path: Path) -> None:
    pages = [
        page(1, "Discussão:Lisboa", "Conversa.", ns=1),
        page(2, "Categoria:Cidades", "Cidades.", ns=14),
        page(3, "Lisbon", "#REDIRECIONAMENTO [[Lisboa]]", redirect="Lisboa"),
        page(4, "Lisbonne", "#redirect [[Lisboa]]"),
        page(5, "Lisbõa", "  #Redirecionamento[[Lisboa]]"),
        page(6, "Vazia", "{{Esboço}}\n[[Categoria:Cidades]]\n{|\n| só tabela\n|}"),
        page(7, "Lisboa", ARTICLE_TEXT),
    ]
    results = read_all(write(tmp_path, "d.xml.bz2", dump(*pages), compress=True))
    skipped = [r for r in results if isinstance(r, Skipped)]
    assert [(s.id, s.title, s.reason) for s in skipped] == [
        (1, "Discussão:Lisboa", "not_namespace_0"),
        (2, "Categoria:Cidades", "not_namespace_0"),
        (3, "Lisbon", "redirect"),
        (4, "Lisbonne", "redirect"),
        (5, "Lisbõa", "redirect"),
        (6, "Vazia", "empty"),
    ]
    assert [s.position.split(" (")[0] for s in skipped] == [f"page {n}" for n in range(1, 7)]
    assert all("(line " in s.position for s in skipped)
    assert isinstance(results[-1], Article) and results[-1].id == 7


def test_too_large_counts_bytes_not_characters(tmp_path: Path) -> None:
    text = "é" * 60  # 60 characters, 120 bytes of UTF-8
    path = write(tmp_path, "d.xml", dump(page(1, "Grande", text)))
    [record] = MediaWikiXmlSource(path).records()
    too_large = MediaWikiXmlSource.convert(record, ConvertOptions(max_article_bytes=100))
    assert isinstance(too_large, Skipped)
    assert (too_large.reason, too_large.id, too_large.title) == ("too_large", 1, "Grande")
    assert "120 bytes" in too_large.detail
    assert isinstance(MediaWikiXmlSource.convert(record, ConvertOptions(max_article_bytes=120)), Article)


def test_min_text_chars(tmp_path: Path) -> None:
    path = write(tmp_path, "d.xml", dump(page(1, "Curta", "Só isto.")))
    [record] = MediaWikiXmlSource(path).records()
    assert MediaWikiXmlSource.convert(record, ConvertOptions(min_text_chars=9)).reason == "empty"
    assert isinstance(MediaWikiXmlSource.convert(record, ConvertOptions(min_text_chars=8)), Article)


def test_page_without_text_and_full_history(tmp_path: Path) -> None:
    no_text = (
        "  <page>\n    <title>Apagada</title>\n    <ns>0</ns>\n    <id>1</id>\n"
        '    <revision>\n      <id>5</id>\n      <text deleted="deleted" />\n    </revision>\n  </page>\n'
    )
    history = (
        "  <page>\n    <title>H</title>\n    <ns>0</ns>\n    <id>2</id>\n"
        "    <revision><id>6</id><text>Antiga.</text></revision>\n"
        "    <revision><id>8</id><text>Atual.</text></revision>\n  </page>\n"
    )
    results = read_all(write(tmp_path, "d.xml", dump(no_text, history)))
    assert isinstance(results[0], Skipped) and results[0].reason == "empty"
    assert isinstance(results[1], Article)
    assert (results[1].revision, results[1].text) == (8, "Atual.")


def test_convert_is_picklable_and_pure(tmp_path: Path) -> None:
    path = write(tmp_path, "d.xml", dump(page(1, "A", ARTICLE_TEXT)))
    [record] = MediaWikiXmlSource(path).records()
    convert = pickle.loads(pickle.dumps(MediaWikiXmlSource.convert))
    copy = pickle.loads(pickle.dumps(record))
    assert isinstance(copy, RawRecord)
    assert convert(copy, OPTIONS) == MediaWikiXmlSource.convert(record, OPTIONS)


def test_truncated_bz2_names_path_and_position(tmp_path: Path) -> None:
    xml = dump(*(page(n, f"P{n}", f"Texto {n}. " * 50) for n in range(1, 30)))
    data = bz2.compress(xml.encode())
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInputError) as info:
        list(MediaWikiXmlSource(path).records())
    message = str(info.value)
    assert str(path) in message
    assert "truncated or corrupt bz2 stream" in message
    assert info.value.position == "after page 0"
    assert "at after page 0" in message


def test_truncated_multistream_keeps_pages_before_the_cut(tmp_path: Path) -> None:
    first = bz2.compress((header() + page(1, "A", "Texto a.") + page(2, "B", "Texto b.")).encode())
    second = bz2.compress((page(3, "C", "Texto c.") + FOOTER).encode())
    path = tmp_path / "cut-multi.xml.bz2"
    path.write_bytes(first + second[: len(second) // 2])
    titles: list[str] = []
    with pytest.raises(CorruptInputError) as info:
        for record in MediaWikiXmlSource(path).records():
            titles.append(record.payload[3])
    assert titles == ["A", "B"]
    assert info.value.position == "after page 2"
    assert str(path) in str(info.value)


def test_corrupt_bz2_data(tmp_path: Path) -> None:
    data = bytearray(bz2.compress(dump(page(1, "A", "Texto a. " * 100)).encode()))
    data[len(data) // 2 : len(data) // 2 + 16] = b"\x00" * 16
    path = tmp_path / "bad.xml.bz2"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptInputError, match="truncated or corrupt bz2 stream"):
        list(MediaWikiXmlSource(path).records())


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    broken = page(2, "B", "Texto b.").replace("</title>", "</titel>")
    xml = dump(page(1, "A", "Texto a."), broken)
    line = next(n for n, text in enumerate(xml.splitlines(), 1) if "</titel>" in text)
    path = write(tmp_path, "bad.xml", xml)
    titles: list[str] = []
    with pytest.raises(CorruptInputError) as info:
        for record in MediaWikiXmlSource(path).records():
            titles.append(record.payload[3])
    assert titles == ["A"]
    assert info.value.position == f"line {line}"
    assert str(path) in str(info.value)
    assert "malformed XML" in str(info.value)


def test_cut_plain_xml_is_malformed(tmp_path: Path) -> None:
    xml = dump(page(1, "A", "Texto a."), page(2, "B", "Texto b."))
    path = write(tmp_path, "cut.xml", xml[: xml.index("<title>B")])
    with pytest.raises(CorruptInputError, match="malformed XML"):
        list(MediaWikiXmlSource(path).records())


@pytest.mark.parametrize(
    ("name", "content", "compress"),
    [
        ("siteinfo-only.xml", header() + FOOTER, False),
        ("siteinfo-only.xml.bz2", header() + FOOTER, True),
        ("zero-bytes.xml", "", False),
    ],
)
def test_no_pages_is_empty_input(tmp_path: Path, name: str, content: str, compress: bool) -> None:
    path = write(tmp_path, name, content, compress=compress)
    with pytest.raises(EmptyInputError) as info:
        list(MediaWikiXmlSource(path).records())
    assert str(path) in str(info.value)
    assert isinstance(info.value, IngestError)


def test_real_dump_berlim(asset) -> None:
    source = MediaWikiXmlSource(asset(BERLIM))
    [record] = list(source.records())
    ns, page_id, revision_id, title, is_redirect, text = record.payload
    assert (ns, page_id, revision_id, title, is_redirect) == (0, 488, 62017799, "Berlim", False)
    assert len(text.encode("utf-8")) == 66127
    assert record.position == "page 1 (line 46)"

    article = source.convert(record, OPTIONS)
    assert isinstance(article, Article)
    assert (article.id, article.revision, article.title) == (488, 62017799, "Berlim")
    assert article.url == "https://pt.wikipedia.org/wiki/Berlim"
    assert article.text.startswith("Berlim (Berlin) é a capital e um dos dezesseis estados da Alemanha.")
    for debris in ("{{", "}}", "[[", "<ref", "{|", "|-", "Categoria:"):
        assert debris not in article.text
    headings = {s.heading for s in article.sections}
    assert {"Etimologia", "História", "Clima", "Cultura"} <= headings
    # "Geografia" has no text of its own, only subsections: empty sections are left out.
    assert "Geografia" not in headings
    assert "Ligações externas" not in headings
    assert article.to_row()["sections"][0] == {"heading": "", "level": 1, "text": article.sections[0].text}

    too_small = source.convert(record, ConvertOptions(max_article_bytes=66126))
    assert isinstance(too_small, Skipped) and too_small.reason == "too_large"
