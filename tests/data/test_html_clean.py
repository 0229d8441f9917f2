"""clean_html: one hand-written fixture per removal rule, modelled on real ptwiki markup."""

from __future__ import annotations

import re

import pytest

from ptwiki_llm.data.article import Section, render_text
from ptwiki_llm.data.html_clean import clean_html, is_trailing_heading

EDIT = (
    '<span class="mw-editsection"><span class="mw-editsection-bracket">[</span>'
    '<a href="/w/index.php?veaction=edit&amp;vesection=1" class="mw-editsection-visualeditor">editar</a>'
    '<span class="mw-editsection-divider"> | </span>'
    '<a href="/w/index.php?action=edit&amp;section=1">editar código-fonte</a>'
    '<span class="mw-editsection-bracket">]</span></span>'
)


def h(level: int, title: str) -> str:
    return f'<h{level}><span class="mw-headline" id="x">{title}</span>{EDIT}</h{level}>'


def page(*parts: str) -> str:
    return '<div id="mw-content-text" lang="pt" dir="ltr" class="mw-content-ltr">' + "\n".join(parts) + "</div>"


def text_of(html: str) -> str:
    return render_text(clean_html(html))


LEAD = "<p><b>Lago Azul</b> é uma cidade do <a href='/wiki/Oregon'>Oregon</a>.</p>"


def test_lead_and_heading_levels() -> None:
    sections = clean_html(page(LEAD, h(2, "História"), "<p>Fundada em 1850.</p>", h(3, "Século XX"), "<p>Cresceu.</p>"))
    assert sections == [
        Section("", 1, "Lago Azul é uma cidade do Oregon."),
        Section("História", 2, "Fundada em 1850."),
        Section("Século XX", 3, "Cresceu."),
    ]


def test_heading_without_headline_span_and_without_edit_links() -> None:
    sections = clean_html(page(LEAD, f"<h2>Geografia {EDIT}</h2>", "<p>Plana.</p>"))
    assert sections[1] == Section("Geografia", 2, "Plana.")
    assert "editar" not in render_text(sections)


@pytest.mark.parametrize(
    "box",
    [
        '<table class="infobox_v2"><tr><th>Lago Azul</th></tr><tr><td>Código FIPS</td><td>40550</td></tr></table>',
        '<table class="infobox vcard"><tr><td>Código FIPS 40550</td></tr></table>',
        '<div class="infobox">Código FIPS 40550</div>',
    ],
)
def test_infobox_removed(box: str) -> None:
    text = text_of(page(box, LEAD))
    assert "FIPS" not in text
    assert text == "Lago Azul é uma cidade do Oregon."


def test_navboxes_removed() -> None:
    text = text_of(
        page(
            LEAD,
            '<table class="navbox noprint collapsible autocollapse"><tr><td>Condados de Ohio Adams | Allen</td>'
            "</tr></table>",
            '<div class="NavFrame"><div class="NavHead">Navegação</div><div class="NavContent">Adams</div></div>',
            '<div class="mw-collapsible collapsed">Cidades do distrito Ahorn | Assamstadt</div>',
            '<div class="navbar plainlinks"><ul><li>v</li><li>e</li></ul></div>',
        )
    )
    assert text == "Lago Azul é uma cidade do Oregon."


def test_every_table_removed() -> None:
    text = text_of(
        page(
            LEAD,
            '<table class="wikitable sortable"><tr><th>Ano</th><th>População</th></tr>'
            "<tr><td>2000</td><td>35 278</td></tr></table>",
            "<table><tr><td>1864 1878 1890</td></tr></table>",
            '<table class="multicol"><tr><td><ul><li>Faixa um</li></ul></td></tr></table>',
        )
    )
    assert text == "Lago Azul é uma cidade do Oregon."


def test_reference_markers_removed_and_text_around_them_kept() -> None:
    text = text_of(
        page(
            '<p>Tinha 35 278 habitantes.<sup id="cite_ref-1" class="reference"><a href="#cite_note-1">'
            "<span>[</span>1<span>]</span></a></sup> Em 2006, 36 713,"
            '<sup class="reference"><a href="#cite_note-2">[2]</a></sup> um aumento.'
            '<sup class="reference"><a href="#cite_note-3">[3]</a></sup>Depois cresceu.'
            # grouped notes ("{{nota}}") carry letters, not just a number
            '<sup class="reference"><a href="#cite_note-N1">[nota 1]</a></sup></p>'
        )
    )
    assert text == "Tinha 35 278 habitantes. Em 2006, 36 713, um aumento. Depois cresceu."


def test_reference_lists_removed_even_outside_trailing_sections() -> None:
    reflist = (
        '<div class="reflist references-small"><ol class="references">'
        '<li id="cite_note-1"><span class="mw-cite-backlink"><a href="#cite_ref-1">↑</a></span> '
        '<span class="reference-text">U.S. Census Bureau. Census 2000</span></li></ol></div>'
    )
    bare = (
        '<ol><li id="cite_note-2"><span class="mw-cite-backlink">↑</span> '
        '<span class="reference-text">Gazetteer</span></li></ol>'
    )
    text = text_of(page(LEAD, h(2, "Demografia"), "<p>Cresce.</p>", reflist, bare))
    assert "Census" not in text and "Gazetteer" not in text and "↑" not in text
    assert text.endswith("Demografia\n\nCresce.")


def test_coordinates_removed() -> None:
    text = text_of(
        page(
            '<div id="coordinates" class="noprint"><p class="coordinates">Coordenadas: '
            "<b>45° 24' 47\" N 122° 41' 50\" O</b></p></div>",
            '<p>Fica em <span class="geo-default"><span class="geo-dms">45° 24\' N</span></span>'
            '<span class="geo">45.41; -122.69</span> no Oregon.</p>',
        )
    )
    assert text == "Fica em no Oregon."


def test_stub_and_maintenance_notices_removed() -> None:
    text = text_of(
        page(
            '<table class="noprint" style="background:none"><tr><td>Este artigo sobre cidades do Oregon é um '
            "esboço. Você pode ajudar a Wikipédia expandindo-o.</td></tr></table>",
            '<table class="ambox"><tr><td>Esta página ou secção não cita fontes confiáveis e independentes</td>'
            "</tr></table>",
            '<div class="metadata topicon" style="display:none">Artigo destacado</div>',
            '<div class="boilerplate metadata">Este artigo contém texto em japonês.</div>',
            '<div class="hatnote">Ver artigo principal: Oregon</div>',
            '<ul class="noprint"><li>Portal de geografia</li></ul>',
            LEAD,
        )
    )
    assert text == "Lago Azul é uma cidade do Oregon."


def test_inline_maintenance_tags_removed() -> None:
    text = text_of(
        page(
            '<p>Foi fundada em 1850.<span style="color:gray"><sup>[</sup></span><sup>'
            '<a href="/wiki/Wikip%C3%A9dia:Livro_de_estilo/Cite_as_fontes"><i>carece de fontes</i></a>'
            '<span style="color:gray">]</span></sup> Cresceu.'
            '<sup class="noprint Inline-Template"><i>[desambiguação necessária]</i></sup></p>'
        )
    )
    assert text == "Foi fundada em 1850. Cresceu."


def test_images_and_galleries_removed() -> None:
    text = text_of(
        page(
            '<div class="thumb tright"><div class="thumbinner"><a href="/wiki/Ficheiro:X.jpg" class="image">'
            '<img alt="X" src="//upload/x.jpg"/></a><div class="thumbcaption">Vista aérea do lago</div></div></div>',
            LEAD,
            '<ul class="gallery mw-gallery-traditional"><li class="gallerybox"><div class="gallerytext">'
            "<p>Igreja matriz</p></div></li></ul>",
            '<figure typeof="mw:File/Thumb"><img src="y.jpg"/><figcaption>Mapa</figcaption></figure>',
        )
    )
    assert text == "Lago Azul é uma cidade do Oregon."


def test_toc_removed_without_leaving_its_heading() -> None:
    toc = (
        '<div id="toc" class="toc"><div id="toctitle"><h2>Índice</h2></div><ul>'
        '<li class="toclevel-1"><a href="#Hist"><span class="tocnumber">1</span> '
        '<span class="toctext">História</span></a></li></ul></div>'
    )
    sections = clean_html(page(LEAD, toc, h(2, "História"), "<p>Antiga.</p>"))
    assert [s.heading for s in sections] == ["", "História"]
    assert "Índice" not in render_text(sections)


def test_trailing_sections_and_their_subsections_dropped() -> None:
    sections = clean_html(
        page(
            LEAD,
            h(2, "História"),
            "<p>Antiga.</p>",
            h(2, "Ver também"),
            "<ul><li>Oregon</li></ul>",
            h(2, "Notas e referências"),
            h(3, "Notas"),
            "<p>Nota solta.</p>",
            h(3, "Bibliografia geral"),
            "<ul><li>Silva, J. (1990). Livro.</li></ul>",
            h(2, "Ligaçoes externas"),
            '<ul><li><a class="external" href="http://x">Sítio oficial</a></li></ul>',
            # real pages sometimes put prose after the end matter; it stays
            h(2, "Curiosidades"),
            "<p>Tem um lago.</p>",
            h(2, "Leitura adicional"),
            "<p>Outro livro.</p>",
        )
    )
    assert [s.heading for s in sections] == ["", "História", "Curiosidades"]
    text = render_text(sections)
    for gone in ("Oregon\n", "Nota solta", "Silva", "Sítio oficial", "Outro livro"):
        assert gone not in text


@pytest.mark.parametrize(
    "heading",
    [
        "Referências",
        "Notas",
        "Ver também",
        "Veja Também",
        "Ligações externas",
        "Ligações Externas",
        "Ligaçõe externas",
        "Links externos",
        "Bibliografia",
        "Fontes",
        "Notas e referências",
        "Leitura adicional",
        "Referências bibliográficas",
        "Ver também.",
        "Fontes/Referências",
    ],
)
def test_trailing_heading_variants(heading: str) -> None:
    assert is_trailing_heading(heading)


@pytest.mark.parametrize(
    "heading", ["Referências culturais", "Notas sobre a produção", "Obras", "História", "Fonte da Visão"]
)
def test_content_headings_are_not_trailing(heading: str) -> None:
    assert not is_trailing_heading(heading)


def test_hidden_and_absolutely_positioned_elements_removed() -> None:
    text = text_of(
        page(
            '<p>Texto<span style="display: none">escondido</span> visível.</p>',
            '<div id="interProject" style="display:none;"><ul><li>Commons</li></ul></div>',
            '<div style="position: relative"><div style="position:absolute; left:10px">Durham (5 km)</div></div>',
        )
    )
    assert text == "Texto visível."


def test_lists_definitions_and_quotes_kept() -> None:
    sections = clean_html(
        page(
            "<p>Obras:</p>",
            "<ul><li>Primeiro livro</li><li>Segundo <i>livro</i><ul><li>Reedição</li></ul></li></ul>",
            "<dl><dt>Prefeito</dt><dd>João Silva</dd></dl>",
            "<blockquote><p>Uma citação longa.</p></blockquote>",
            "<p>Fim.</p>",
        )
    )
    assert sections[0].text == (
        "Obras:\n\nPrimeiro livro\nSegundo livro\nReedição\n\nPrefeito\nJoão Silva\n\nUma citação longa.\n\nFim."
    )


def test_whitespace_and_line_breaks_normalised() -> None:
    text = text_of(page("<p>  Uma\n   linha\u00a0só  </p>", "<p>Verso um<br/>verso   dois</p>", "<p> </p>"))
    assert text == "Uma linha só\n\nVerso um\nverso dois"


def test_sections_left_empty_by_removal_are_dropped() -> None:
    sections = clean_html(
        page(
            LEAD,
            h(2, "Galeria"),
            '<ul class="gallery"><li class="gallerybox">Foto</li></ul>',
            h(2, "Dados"),
            '<table class="wikitable"><tr><td>1</td></tr></table>',
        )
    )
    assert [s.heading for s in sections] == [""]
    assert all(s.text for s in sections)


def test_unexpanded_wikitext_in_prose_repaired() -> None:
    text = text_of(
        page(
            "<p>Produção de [[cana]] e [[Rapadura|panela]].</p>",
            "<p>Uma galáxia {{{typ}}} em Eridanus.</p>",
            "<p>Frases famosas</ref></ref>: a primeira.</p>",
        )
    )
    assert text == "Produção de cana e panela.\n\nUma galáxia em Eridanus.\n\nFrases famosas: a primeira."


def test_math_kept_as_tex() -> None:
    formula = (
        '<span class="mwe-math-element"><span class="mwe-math-mathml-inline mwe-math-mathml-a11y" '
        'style="display: none;"><math><semantics><mi>x</mi><annotation>x^2</annotation></semantics></math>'
        '</span><img src="x.svg" class="mwe-math-fallback-image-inline" alt="{\\displaystyle x^{2}}"/></span>'
    )
    assert text_of(page(f"<p>O quadrado {formula} é positivo.</p>")) == "O quadrado x^{2} é positivo."


def test_parsoid_document() -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Lago Azul</title><style>.x{}</style></head><body>"
        '<section data-mw-section-id="0"><p>Lago Azul é uma cidade.<sup class="mw-ref reference">'
        '<a href="#cite_note-1"><span class="mw-reflink-text">[1]</span></a></sup></p>'
        '<figure typeof="mw:File/Thumb"><a><img src="a.jpg"/></a><figcaption>Vista</figcaption></figure>'
        '<table class="infobox"><tr><td>Área 28 km²</td></tr></table></section>'
        '<section data-mw-section-id="1"><div class="mw-heading mw-heading2"><h2 id="História">História</h2>'
        f"{EDIT}</div><p>Antiga.</p></section>"
        '<section data-mw-section-id="2"><h2 id="Referências">Referências</h2>'
        '<div class="mw-references-wrap"><ol class="mw-references references"><li>Fonte</li></ol></div>'
        "</section></body></html>"
    )
    assert clean_html(html) == [Section("", 1, "Lago Azul é uma cidade."), Section("História", 2, "Antiga.")]


@pytest.mark.parametrize("html", ["", "   ", "<!-- só comentário -->", "<div></div>", b""])
def test_nothing_to_keep(html: str | bytes) -> None:
    assert clean_html(html) == []


def test_broken_html_and_bytes_input() -> None:
    assert clean_html("<p>Sem fecho <b>negrito") == [Section("", 1, "Sem fecho negrito")]
    assert clean_html("<p>ação</p>".encode()) == [Section("", 1, "ação")]
    # a lone surrogate (possible in JSON) must not cut the rest of the text off
    assert clean_html("<p>a\ud800b</p>")[0].text == "a?b"


def test_no_markup_leftovers_in_a_busy_page() -> None:
    html = page(
        '<div id="coordinates" class="noprint">45° 24\' N</div>',
        '<table class="infobox_v2"><tr><td>FIPS</td></tr></table>',
        LEAD.replace(".</p>", '.<sup class="reference"><a>[1]</a></sup></p>'),
        '<div id="toc" class="toc"><h2>Índice</h2></div>',
        h(2, "Demografia"),
        '<p>Tem &lt;muitos&gt; habitantes <a rel="nofollow" class="external autonumber" href="http://x">[2]</a>.</p>',
        h(2, "Referências"),
        '<div class="reflist"><ol class="references"><li><span class="mw-cite-backlink">↑</span> X</li></ol></div>',
    )
    text = text_of(html)
    assert text == "Lago Azul é uma cidade do Oregon.\n\nDemografia\n\nTem <muitos> habitantes."
    assert not re.search(r"\[\d+\]|\[editar|↑|°", text)
