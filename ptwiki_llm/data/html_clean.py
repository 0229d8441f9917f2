"""Rendered Wikipedia HTML to clean plain text, split into sections.

Written for the article HTML of Wikimedia Enterprise snapshots: both the legacy parser output
(``<div id="mw-content-text">``, MediaWiki 1.28 in the bundled sample) and Parsoid documents
(``<section>``, ``<figure>``, ``div.mw-heading``) go through the same rules, because the rules key on
classes and tags both renderers share.

The work is one C parse, a handful of pre-compiled XPath queries that find what to remove, and a
single walk over what is left. Everything per-element that can stay in C (XPath, ``itertext``) does;
Python only touches block-level elements.
"""

from __future__ import annotations

import re
import unicodedata

from lxml import etree

from ptwiki_llm.data.article import Section

# Classes whose element goes entirely, whatever its tag. Matched as whole class tokens, after an
# XPath substring pre-filter (so "reference" does not also remove "reference-text" in running text).
DROP_CLASSES = frozenset(
    {
        # citations: markers in the text, the lists at the end, and cite errors (they quote "<ref>")
        "reference",
        "references",
        "reflist",
        "references-small",
        "mw-references-wrap",
        "mw-cite-backlink",
        "mw-ref",
        "error",
        "mw-ext-cite-error",
        "citation-comment",
        "scribunto-error",
        "Inline-Template",
        "Template-Fact",
        "wikicite",
        # bare external links render as "[1]"
        "autonumber",
        # edit links (current and pre-1.22 markup)
        "mw-editsection",
        "editsection",
        # boxes around the prose: infoboxes, navigation, maintenance and stub notices
        "infobox",
        "infobox_v2",
        "navbox",
        "vertical-navbox",
        "navbar",
        "NavFrame",
        "NavHead",
        "NavContent",
        "mw-collapsible",
        "noprint",
        "metadata",
        "ambox",
        "tmbox",
        "ombox",
        "cmbox",
        "fmbox",
        "dmbox",
        "mbox-small",
        "boilerplate",
        "notice",
        "hatnote",
        "dablink",
        "rellink",
        "seealso",
        "topicon",
        "portal",
        "sistersitebox",
        "toc",
        "toccolours",
        "printfooter",
        "printonly",
        "catlinks",
        # images, galleries, media players, timelines, map legends
        "thumb",
        "thumbinner",
        "thumbcaption",
        "gallery",
        "gallerybox",
        "mediaContainer",
        "PopUpMediaTransform",
        "haudio",
        "timeline-wrapper",
        "legend",
        "magnify",
        # coordinates (the title-bar block and inline {{coord}})
        "coordinates",
        "geo",
        "geo-dms",
        "geo-dec",
        "geo-default",
        "geo-nondefault",
        # MathML copy of a formula; the TeX from the fallback image is kept instead (see _math_to_text)
        "mwe-math-mathml-a11y",
        # invisible helpers
        "sortkey",
        "Z3988",
    }
)

DROP_IDS = frozenset({"toc", "toctitle", "coordinates", "interProject", "RealTitleBanner", "catlinks", "siteSub"})

DROP_TAGS = frozenset(
    {
        "table",
        "script",
        "style",
        "noscript",
        "link",
        "meta",
        "img",
        "figure",
        "audio",
        "video",
        "source",
        "track",
        "map",
        "math",
        "svg",
        "object",
        "embed",
        "iframe",
        "form",
        "input",
        "button",
        "gallery",
        "title",
        "base",
    }
)

HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
LISTS = frozenset({"ul", "ol", "dl"})
# Elements that start and end a paragraph; everything else is inline and contributes its text.
BLOCKS = frozenset(
    {
        "p",
        "div",
        "blockquote",
        "ul",
        "ol",
        "dl",
        "li",
        "dt",
        "dd",
        "pre",
        "center",
        "section",
        "article",
        "main",
        "aside",
        "header",
        "footer",
        "nav",
        "address",
        "details",
        "summary",
        "figcaption",
        "hr",
        "body",
        "html",
    }
)

# Sections that hold citations, links and reading lists rather than article prose. Compared after
# _heading_key (accents, case and punctuation folded); the regexes catch the typo'd variants that
# occur on real pages ("Ligaçoes externas", "Ligações exeternas", "Ver tambaém").
TRAILING_HEADINGS = frozenset(
    {
        "ver tambem",
        "veja tambem",
        "vide tambem",
        "ler tambem",
        "ver",
        "topicos relacionados",
        "artigos relacionados",
        "referencias",
        "referencia",
        "referencias bibliograficas",
        "referencia bibliografica",
        "referencias gerais",
        "referencias externas",
        "referencias e notas",
        "referencias e comentarios",
        "outras referencias",
        "livros para referencia",
        "informacao de referencia",
        "fonte de referencia",
        "notas",
        "nota",
        "notas e referencias",
        "notas de rodape",
        "fontes",
        "fonte",
        "fontes e referencias",
        "fontes referencias",
        "fontes e bibliografia",
        "fontes e ligacoes externas",
        "outras fontes",
        "outras fontes bibliograficas",
        "fonte da traducao",
        "bibliografia",
        "bibliografias",
        "bibliografie",
        "bibliografia parcial",
        "bibliograficas",
        "leitura adicional",
        "leituras adicionais",
        "leitura complementar",
        "leitura de apoio",
        "leitura recomendada",
        "ligacoes externas",
        "ligacao externa",
        "links externos",
        "link externo",
        "links",
        "outros links",
        "outras ligacoes",
        "weblinks",
        "websites",
        "enlace externo",
        "enlaces externos",
        "conexoes externas",
        "outros projetos",
        "liens externes",
        "external links",
        "see also",
        "references",
        "notes",
        "further reading",
        "bibliography",
    }
)
_TRAILING_PATTERNS = re.compile(r"^(?:liga\w*\s+ex\w*|(?:ver|veja|vide|ler)\s+tamb\w*)$")

_CLASS_TOKEN = re.compile(r"\S+")
# Substring pre-filter evaluated in C; _strip then checks whole tokens in Python for the few
# candidates. One contains() per distinct substring: tokens that contain another are covered by it.
_CLASS_SUBSTRINGS = sorted({c for c in DROP_CLASSES if not any(o != c and o in c for o in DROP_CLASSES)})
_FIND_CLASS_CANDIDATES = etree.XPath(
    "//*[@class][" + " or ".join(f"contains(@class, '{s}')" for s in _CLASS_SUBSTRINGS) + "]"
)
_FIND_BY_TAG_OR_ID = etree.XPath(
    "//*["
    + " or ".join(f"self::{t}" for t in sorted(DROP_TAGS))
    + " or "
    + " or ".join(f"@id='{i}'" for i in sorted(DROP_IDS))
    # reference lists that lost their class (plain <ol> of cite notes)
    + " or starts-with(@id, 'cite_note')"
    + "]"
)
# Inline maintenance tags ("[carece de fontes]", the "?" help icon) are a <sup> linking into the
# project or help namespace; some templates split off the brackets into sups of their own, and a few
# pages type reference markers ("<sup>[84]</sup>") by hand.
_FIND_MARKER_SUPS = etree.XPath(
    "//sup[.//a[contains(@href, 'Wikip%C3%A9dia:') or contains(@href, 'Wikipédia:')"
    " or contains(@href, 'Ajuda:')]"
    " or normalize-space(.) = '[' or normalize-space(.) = ']'"
    " or (string-length(normalize-space(.)) > 2"
    " and translate(normalize-space(.), '0123456789', '') = '[]')]"
)
# Hidden elements, and absolutely positioned overlays (labels on location maps and diagrams).
_FIND_HIDDEN = etree.XPath(
    "//*[@style][contains(translate(@style, ' ', ''), 'display:none')"
    " or contains(translate(@style, ' ', ''), 'position:absolute')]"
)
_FIND_MATH_IMAGES = etree.XPath("//img[contains(@class, 'mwe-math-fallback-image')]")
_FIND_BR = etree.XPath("//br")
_TEX_WRAPPER = re.compile(r"^\{\\(?:displaystyle|textstyle|scriptstyle)\s*(.*)\}$", re.DOTALL)
# Punctuation that ends a clause: a removed marker after it stood between two words, one before it
# stood after a word.
_PUNCTUATION = frozenset(".!?;:,)")
# Template parameters the page left unfilled ("uma galáxia {{{typ}}} localizada ...").
_UNFILLED_PARAMETER = re.compile(r"\s*\{\{\{[^{}]*\}\}\}")
# Wikitext an editor typed where the parser did not expand it ("transformação do [[cana]]", a "</ref>"
# without its opening tag): render a link as its label, drop the stray tag.
_WIKILINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")
_STRAY_REF = re.compile(r"\s*</?ref\b[^>]*>")
_EDIT_LEFTOVER = re.compile(r"\s*\[\s*editar[^\]]*\]\s*$", re.IGNORECASE)

# <br> becomes this marker rather than "\n": newlines in the HTML source are plain whitespace, a <br>
# is a real line break, and both go through the same whitespace normalisation.
_BR = "\ue000"

# Bytes with a fixed encoding: a <meta charset> inside the fragment cannot override it, and a lone
# surrogate from JSON becomes "?" at encode time instead of silently truncating the text in libxml2.
_PARSER = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, recover=True)


def clean_html(html: str | bytes) -> list[Section]:
    """Sections of plain text from article HTML; the lead is ``Section("", 1, ...)``.

    Removes tables, infoboxes, navigation, citations, images, coordinates, notices and the trailing
    reference/link sections; empty sections are left out. ``bytes`` must be UTF-8.
    """
    data = html.encode("utf-8", "replace") if isinstance(html, str) else html
    if not data or data.isspace():
        return []
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return []
    if root is None:
        return []
    _strip(root)
    body = root.find("body")
    walker = _Walker()
    walker.walk(body if body is not None else root)
    return walker.finish()


def _strip(root: etree._Element) -> None:
    # Formulas first: their MathML twin is display:none and would otherwise take the formula with it.
    for img in _FIND_MATH_IMAGES(root):
        _math_to_text(img)
    for el in _FIND_CLASS_CANDIDATES(root):
        if not DROP_CLASSES.isdisjoint(_CLASS_TOKEN.findall(el.get("class", ""))):
            _drop(el)
    for el in _FIND_BY_TAG_OR_ID(root):
        _drop(el)
    for el in _FIND_HIDDEN(root):
        _drop(el)
    for el in _FIND_MARKER_SUPS(root):
        _drop(el)
    for br in _FIND_BR(root):
        br.tail = _BR + br.tail if br.tail else _BR


def _drop(el: etree._Element) -> None:
    """Remove ``el`` but keep the text that follows it (lxml stores that on the element as tail)."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    if tail:
        previous = el.getprevious()
        before = previous.tail if previous is not None else parent.text
        # "fim.<sup>[1]</sup>Começo" renders with the marker between the sentences; without it they
        # would run together.
        if before and before[-1] in _PUNCTUATION and tail[0].isalpha():
            tail = " " + tail
        # ...and "habitantes <a>[2]</a>." would leave a space before the full stop.
        elif before and tail[0] in _PUNCTUATION and before[-1].isspace():
            before = before.rstrip()
        joined = before + tail if before else tail
        if previous is not None:
            previous.tail = joined
        else:
            parent.text = joined
    parent.remove(el)


def _math_to_text(img: etree._Element) -> None:
    """Turn a formula's fallback image into its TeX source, inline."""
    tex = " ".join((img.get("alt") or "").split())
    match = _TEX_WRAPPER.match(tex)
    if match:
        tex = match.group(1).strip()
    tail = img.tail
    img.clear()  # also drops the tail; put it back
    img.tag = "span"
    img.text = tex
    img.tail = tail


def _heading_key(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c if c.isalnum() or c.isspace() else " " if c == "/" else "" for c in folded)
    return " ".join(kept.split())


def is_trailing_heading(text: str) -> bool:
    """True for "Referências", "Ligações externas", "Ver também" and the other end-matter headings."""
    key = _heading_key(text)
    return key in TRAILING_HEADINGS or _TRAILING_PATTERNS.match(key) is not None


def _normalize(text: str) -> str:
    if _BR not in text:
        return " ".join(text.split())
    lines = (" ".join(line.split()) for line in text.split(_BR))
    return "\n".join(line for line in lines if line)


class _Walker:
    """One pass over the stripped tree, collecting paragraphs into sections."""

    __slots__ = (
        "buf",
        "chunks",
        "heading",
        "last_was_item",
        "level",
        "list_depth",
        "sections",
        "skip_level",
    )

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.heading = ""
        self.level = 1
        self.chunks: list[str] = []
        self.buf: list[str] = []
        self.list_depth = 0
        self.last_was_item = False
        # Level of the trailing heading being skipped; deeper headings are skipped with it.
        self.skip_level: int | None = None

    def walk(self, parent: etree._Element) -> None:
        if parent.text:
            self.buf.append(parent.text)
        for child in parent:
            tag = child.tag
            if tag in BLOCKS:
                self._block(child, tag)
            elif tag in HEADINGS:
                self._flush()
                self._heading(child, tag)
            else:
                self.buf.extend(child.itertext())
            if child.tail:
                self.buf.append(child.tail)

    def finish(self) -> list[Section]:
        self._flush()
        self._close_section()
        return self.sections

    def _block(self, el: etree._Element, tag: str) -> None:
        self._flush()
        if tag == "pre":
            self._pre(el)
            return
        is_list = tag in LISTS
        if is_list:
            self.list_depth += 1
        self.walk(el)
        self._flush()
        if is_list:
            self.list_depth -= 1
            if self.list_depth == 0:
                self.last_was_item = False

    def _pre(self, el: etree._Element) -> None:
        # Code and verse keep their line breaks; only trailing spaces and blank edges go.
        raw = "".join(el.itertext()).replace(_BR, "\n")
        lines = [line.rstrip() for line in raw.split("\n")]
        text = "\n".join(lines).strip("\n")
        if text.strip():
            self._emit(text)

    def _flush(self) -> None:
        if not self.buf:
            return
        text = _normalize("".join(self.buf))
        self.buf.clear()
        if "{{{" in text:
            text = _UNFILLED_PARAMETER.sub("", text).strip()
        if "[[" in text:
            text = _WIKILINK.sub(r"\1", text)
        if "ref" in text and ("<ref" in text or "</ref" in text):
            text = _STRAY_REF.sub("", text).strip()
        if text:
            self._emit(text)

    def _emit(self, text: str) -> None:
        if self.skip_level is not None:
            return
        in_list = self.list_depth > 0
        if self.chunks:
            self.chunks.append("\n" if in_list and self.last_was_item else "\n\n")
        self.chunks.append(text)
        self.last_was_item = in_list

    def _heading(self, el: etree._Element, tag: str) -> None:
        level = int(tag[1])
        text = _normalize("".join(el.itertext())).replace("\n", " ")
        if "[" in text:
            text = _EDIT_LEFTOVER.sub("", text)
        self._close_section()
        if self.skip_level is not None and level > self.skip_level:
            return
        if is_trailing_heading(text):
            self.skip_level = level
            return
        self.skip_level = None
        self.heading = text
        self.level = level

    def _close_section(self) -> None:
        if self.chunks and self.skip_level is None:
            self.sections.append(Section(heading=self.heading, level=self.level, text="".join(self.chunks)))
        self.chunks = []
        self.last_was_item = False
