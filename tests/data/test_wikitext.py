"""clean_wikitext: markup removal rules, sections, and the real ptwiki page "Berlim"."""

from __future__ import annotations

import bz2

import pytest
from lxml import etree

from ptwiki_llm.data.article import Section, render_text
from ptwiki_llm.data.wikitext import clean_wikitext

BERLIM = "data/ptwiki_dbpedia_minidump_berlim.xml.bz2"


def text_of(wikitext: str) -> str:
    return render_text(clean_wikitext(wikitext))


@pytest.mark.parametrize(
    ("wikitext", "expected"),
    [
        # Templates, nested, multi-line, parser functions and stray parameters.
        ("A {{foo|{{bar|x}}|y}} B", "A B"),
        (
            "{{Info/Cidade\n| nome = [[Lisboa]]\n| pop = {{formatnum:545000}}\n}}\nLisboa é a capital.",
            "Lisboa é a capital.",
        ),
        ("x {{#if: {{{1|}}} | y | z}} w", "x w"),
        ("a {{x|b={c} e}} d", "a d"),
        # Inline templates whose output is part of the sentence.
        ("no {{séc|XIII}}, Berlim", "no século XIII, Berlim"),
        ("Berlim ({{Lang-de|''Berlin''}}) é", "Berlim (Berlin) é"),
        ("Berlim ({{Coord|52|N}}) é", "Berlim é"),
        ("{{formatnum:3711930}} habitantes, {{converter|5|km|mi}}", "3711930 habitantes, 5 km"),
        ("a {{nowrap|b [[c|d]]}} e", "a b d e"),
        # References, comments.
        ('texto<ref name="a">{{citar web|url=x}}</ref> mais<ref name="b/c" />.', "texto mais."),
        ("a<ref>um</ref> b<REF group=n>dois</REF>.", "a b."),
        ("a <!-- oculto [[x]] {{y}} --> b", "a b"),
        ("a <!-- sem fim", "a"),
        # Tables, nested and indented.
        ("antes\n{| class=wikitable\n|-\n| a\n{|\n| dentro\n|}\n| b\n|}\ndepois", "antes\n\ndepois"),
        (":{|\n| a\n|}\ntexto", "texto"),
        ("a\n{{Tabela início}}\n! Nome\n| x || y\n|}\nb", "a\n\nb"),
        # File links (every localized prefix), with links nested in the caption.
        ("[[Ficheiro:X.jpg|thumb|O [[rio Spree]] em [[Mitte]]]]Texto", "Texto"),
        ("[[imagem:Y.png|[[a|b]] e [[c]]]]a [[Arquivo:Z.svg]]b [[File:W.jpg|x]]c [[Image:V.gif]]d", "a b c d"),
        ("[[Ficheiro:X.jpg|thumb|Foto de [http://x.org Fulano] em [[Roma]]]]fim", "fim"),
        # Internal links, link trails, pipe trick.
        ("As [[universidade]]s e os [[Rio de Janeiro|cariocas]]", "As universidades e os cariocas"),
        ("[[Foo (bar)|]] e [[Star Wars: Episódio I]]", "Foo e Star Wars: Episódio I"),
        # Categories and interwiki links are dropped; a colon-prefixed link is shown.
        ("Texto.\n[[Categoria:Cidades da Alemanha]]\n[[Category:X|Y]]", "Texto."),
        ("Texto.\n[[en:Berlin]]\n[[de:Berlin]] [[zh-yue:柏林]]", "Texto."),
        ("Veja [[:en:Berlin|Berlin]] e [[:Categoria:Cidades]]", "Veja Berlin e Categoria:Cidades"),
        # External links.
        ("Ver [http://x.org Sítio oficial] e [https://y.org] aqui", "Ver Sítio oficial e aqui"),
        # Bold and italics.
        ("'''negrito''', ''itálico'' e '''''ambos'''''", "negrito, itálico e ambos"),
        ("d''''Água''''", "d'Água'"),
        # Tags: dropped with content, verbatim, or stripped keeping the text.
        ("<gallery>\nA.jpg|[[x]]\n</gallery>\nDepois", "Depois"),
        ("a<timeline>Period = x</timeline> b<score>\\relative c'</score>", "a b"),
        ("<nowiki>{{não é}} [[link]] ''x''</nowiki>", "{{não é}} [[link]] ''x''"),
        ("área <math>\\frac{a}{b}</math>.", "área \\frac{a}{b}."),
        ("<syntaxhighlight lang=python>\nif x: [y]\n</syntaxhighlight>", "if x: [y]"),
        ("<pre>\n! x\n| y\n* z\n</pre>", "! x\n| y\n* z"),
        ("a<ref>sem fim\nb", "asem fim\nb"),
        ('<small>pequeno</small> <span style="x">a</span> km<sup>2</sup>', "pequeno a km2"),
        ("linha<br />nova <center>c</center>", "linha\nnova c"),
        # Magic words, lists, entities, whitespace.
        ("__NOTOC__\n__SEMTDC__\nTexto __TOC__ aqui", "Texto aqui"),
        ("* um\n** dois\n# três\n#: quatro\n; termo\n----\nfim", "um\ndois\ntrês\nquatro\ntermo\n\nfim"),
        ("a&nbsp;b &amp; c &lt;d&gt; &mdash; e&#233;", "a b & c <d> — eé"),
        ("  um   dois  \n\n\n\n  três\t\tquatro  ", "um dois\n\ntrês quatro"),
    ],
)
def test_markup_rules(wikitext: str, expected: str) -> None:
    assert text_of(wikitext) == expected


def test_sections_levels_and_dropped_tail() -> None:
    wikitext = (
        "Lead.\n"
        "== História ==\nH.\n"
        "=== Antiguidade ===\nA.\n"
        "==== Pormenor ====\nP.\n"
        "== Vazia ==\n{{só predefinição}}\n"
        "== Referências ==\n{{Referências}}\n=== Sub de referências ===\nnão\n"
        "== Ligacoes Externas ==\n* [http://x.org x]\n"
        "==NOTAS==\nnão\n"
        "== Ver também: ==\n* [[Outra]]\n"
        "== Depois ==\nsim\n"
    )
    assert clean_wikitext(wikitext) == [
        Section("", 1, "Lead."),
        Section("História", 2, "H."),
        Section("Antiguidade", 3, "A."),
        Section("Pormenor", 4, "P."),
        Section("Depois", 2, "sim"),
    ]


@pytest.mark.parametrize(
    "heading",
    ["Ver também", "Referências", "Notas", "Notas e referências", "Ligações externas", "Bibliografia",
     "Fontes", "Leitura adicional", "REFERENCIAS", "ligações  externas"],
)  # fmt: skip
def test_every_dropped_heading(heading: str) -> None:
    sections = clean_wikitext(f"Lead.\n== {heading} ==\nfora\n=== Sub ===\nfora também\n")
    assert sections == [Section("", 1, "Lead.")]


def test_heading_that_cleans_to_nothing_continues_the_previous_section() -> None:
    assert clean_wikitext("Lead\n== A ==\na\n== {{Tradução}} ==\nb\n") == [
        Section("", 1, "Lead"),
        Section("A", 2, "a\n\nb"),
    ]


def test_heading_markup_is_cleaned() -> None:
    sections = clean_wikitext("== [[Geografia]] da ''região''<ref>x</ref> ==\nTexto.")
    assert sections == [Section("Geografia da região", 2, "Texto.")]


def test_empty_and_markup_only_pages() -> None:
    assert clean_wikitext("") == []
    assert clean_wikitext("{{Info}}\n[[Categoria:X]]\n{|\n| a\n|}\n") == []


def test_unclosed_markup_does_not_swallow_the_page() -> None:
    text = text_of("A {{aberta\n\nB [[sem fim\n\nC")
    assert "{{" not in text and "[[" not in text
    assert "B" in text and "C" in text


def _berlim_wikitext(path) -> str:
    root = etree.fromstring(bz2.decompress(path.read_bytes()))
    return root.findtext(".//{*}revision/{*}text")


def test_real_page_berlim(asset) -> None:
    wikitext = _berlim_wikitext(asset(BERLIM))
    assert len(wikitext.encode("utf-8")) == 66127  # the staged page, unchanged
    sections = clean_wikitext(wikitext)
    text = render_text(sections)

    for debris in ("{{", "}}", "[[", "]]", "<ref", "</ref", "{|", "|-", "|}", "<!--", "&nbsp;", "'''"):
        assert debris not in text, debris
    for leftover in ("thumb", "Imagem:", "Categoria", "Liga Hanseática", "Commonscat", "wikitable", "http"):
        assert leftover not in text, leftover

    lead = sections[0]
    assert (lead.heading, lead.level) == ("", 1)
    assert lead.text.startswith("Berlim (Berlin) é a capital e um dos dezesseis estados da Alemanha.")
    assert "Documentada pela primeira vez no século XIII, Berlim foi sucessivamente" in lead.text
    # Link trail: "[[universidade]]s".
    assert "algumas das mais importantes universidades, eventos esportivos" in lead.text

    headings = [(s.heading, s.level) for s in sections]
    for expected in [("Etimologia", 2), ("História", 2), ("Primórdios", 3), ("Século XX", 3),
                     ("Demografia", 2), ("Economia", 2), ("Transportes", 3), ("Esportes", 3)]:  # fmt: skip
        assert expected in headings
    assert headings[-1] == ("Esportes", 3)
    assert all(s.text and s.text == s.text.strip() for s in sections)
    assert not any(line != line.strip() for s in sections for line in s.text.split("\n"))
    assert "\n\n\n" not in text
    # Sections that held only a table ("Cidades-irmãs", "Subdivisões") or only navigation
    # ("Ligações externas") are gone.
    assert not {"Ligações externas", "Referências", "Cidades-irmãs", "Subdivisões"} & {h for h, _ in headings}
    assert "Página oficial de Berlim" not in text
    # Prose is kept: the page's text is about half of its wikitext, the rest is markup and refs.
    assert 25_000 < len(text) < 40_000
