"""Wikitext to clean plain text, split into sections.

This is a linear scanner plus compiled regexes, not a parse tree: a full parser such as
mwparserfromhell is an order of magnitude slower, and the ingest reads about a million
pages. The price is that a few pathological constructs (an unclosed ``{{`` or ``[[``, a
table closed on the same line as a template) come out slightly differently than MediaWiki
would render them; what comes out is still free of markup.

The passes run in a fixed order because each one relies on the previous ones:

1. comments go first, since they can hide any other markup;
2. extension tags: verbatim ones (``<nowiki>``, ``<math>``, ``<pre>``...) have their content
   entity-escaped, so no later pass sees its braces or brackets as markup (the final unescape
   restores them); those whose content is never prose (``<ref>``, ``<gallery>``...) are
   dropped whole, before templates, because a reference's closing tag may sit inside a
   template argument;
3. templates, then tables (a template argument may look like a table line ``|}``);
4. external links before internal ones, so a file caption holding ``[http://x label]``
   no longer contains brackets when the ``[[...]]`` pass looks for innermost links;
5. the remaining HTML tags, quotes and magic words; then the text is split at headings,
   list markers and whitespace are normalized and entities are unescaped per section.

Templates are dropped, except a handful of inline ones whose output is part of a sentence
(``{{séc|XIII}}`` -> "século XIII", ``{{lang-de|Berlin}}``, ``{{formatnum:1234}}``,
``{{nowrap|...}}``, ``{{converter|5|km}}``, ``{{ndash}}``); dropping those would leave
"no , Berlim foi..." in the text.
"""

from __future__ import annotations

import html
import re
import unicodedata

from ptwiki_llm.data.article import Section

__all__ = ["DROPPED_SECTIONS", "clean_wikitext"]

# Headings (accent- and case-folded, see _fold) whose sections, with everything nested under
# them, are references or navigation rather than article prose.
DROPPED_SECTIONS = frozenset(
    {
        "ver tambem",
        "referencias",
        "notas",
        "notas e referencias",
        "referencias e notas",
        "notas de rodape",
        "ligacoes externas",
        "links externos",
        "bibliografia",
        "fontes",
        "leitura adicional",
    }
)

_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)

# Extension tags. Verbatim ones keep their content as text, escaped so later passes leave it
# alone; the others hold no prose (references, galleries, plots, maps, music, glyphs) and go
# with their content.
_VERBATIM_TAGS = frozenset({"nowiki", "pre", "math", "chem", "ce", "syntaxhighlight", "source"})
_DROPPED_TAGS = frozenset(
    {
        "references", "ref", "gallery", "timeline", "score", "imagemap", "graph", "mapframe", "maplink",
        "templatedata", "templatestyles", "includeonly", "hiero", "categorytree", "inputbox", "indicator",
    }
)  # fmt: skip
# Longer names first so the alternation never stops at a prefix ("references" before "ref").
_EXTENSION_TAG_RE = re.compile(
    r"<(/?)(" + "|".join(sorted(_VERBATIM_TAGS | _DROPPED_TAGS, key=len, reverse=True)) + r")\b[^<>]*?(/?)>",
    re.I,
)
_ESCAPE_TABLE = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "{": "&#123;",
        "}": "&#125;",
        "[": "&#91;",
        "]": "&#93;",
        "|": "&#124;",
        "'": "&#39;",
        "=": "&#61;",
        "*": "&#42;",
        "#": "&#35;",
        ":": "&#58;",
        ";": "&#59;",
        "_": "&#95;",
        "~": "&#126;",
        "!": "&#33;",
    }
)

# Template parameters ({{{1}}}) only appear in ns 0 by mistake; removing them first keeps the
# brace scanner from pairing their third brace with a neighbour.
_PARAM_RE = re.compile(r"\{\{\{[^{}]*\}\}\}")
_TEMPLATE_TOKEN_RE = re.compile(r"\{\{|\}\}")
_INLINE_TEMPLATE_RE = re.compile(
    r"\{\{\s*(?:formatnum:|(?:s[ée]c(?:ulo)?|lang-[a-z-]+|lang|nowrap|nobr|fmtn|ndash|mdash|converter|convert)"
    r"\s*[|}])",
    re.I,
)
_NAMED_ARG_RE = re.compile(r"\s*[\w -]+=")
_LINK_IN_ARG_RE = re.compile(r"\[\[[^\[\]]*\]\]|\|")

# Line-start constructs are matched after a "\n" (the text is given a leading one) instead of
# with "^" and re.M: a literal first character lets the regex engine skip ahead, "^" does not.
_TABLE_TOKEN_RE = re.compile(r"\n[ \t:]*(\{\||\|\})")
_HEADING_LINE_RE = re.compile(r"\n=")
# Row and cell lines left outside any "{|": tables opened or closed by a template
# ({{Tabela início}} ... |}). Prose lines never start with "|" or "!".
_TABLE_DEBRIS_RE = re.compile(r"\n[ \t]*[|!][^\n]*")

_EXTERNAL_LINK_RE = re.compile(
    r"\[(?:https?://|ftp://|//|mailto:|news:|irc://)[^\[\]\s]*(?:[ \t]+([^\[\]\n]*))?\]", re.I
)
_LINK_RE = re.compile(r"\[\[([^\[\]]*)\]\]")
# [[Target]] and [[Target|label]] without a namespace colon: most links on a page. Replaced by
# re.split (one group or the other is the visible text) so no Python callback runs per link.
_PLAIN_LINK_RE = re.compile(r"\[\[(?:([^\[\]|:]+)|[^\[\]|:]*\|([^\[\]]+))\]\]")
_DROPPED_NAMESPACES = frozenset({"ficheiro", "imagem", "arquivo", "file", "image", "categoria", "category"})
# Language links never have a label and are written with a lowercase code ("en", "zh-yue");
# requiring both keeps titles such as "Rio: 40 Graus" out.
_INTERWIKI_PREFIX_RE = re.compile(r"(?:[a-z]{2,3}(?:-[a-z]+)*|simple)")
_PARENTHETICAL_RE = re.compile(r"\s*\([^()]*\)\s*$")

_BR_RE = re.compile(r"<br\s*/?\s*>", re.I)
_HTML_TAG_RE = re.compile(
    r"</?(?:a|abbr|b|bdi|bdo|big|blockquote|caption|center|cite|code|data|dd|del|dfn|div|dl|dt|em"
    r"|font|h[1-6]|hr|i|ins|kbd|li|mark|noinclude|ol|onlyinclude|p|poem|q|rb|rp|rt|rtc|ruby|s|samp"
    r"|section|small|span|strike|strong|sub|sup|table|td|th|time|tr|tt|u|ul|var|wbr"
    # Leftovers of the tags handled above when they were left unclosed.
    r"|nowiki|pre|math|chem|ce|syntaxhighlight|source|references|ref|gallery|timeline|score"
    r"|imagemap|graph|mapframe|maplink|templatedata|templatestyles|includeonly|hiero"
    r"|categorytree|inputbox|indicator)\b[^<>]*>",
    re.I,
)
# Four quotes are an apostrophe followed by bold; every other run is pure formatting.
_FOUR_QUOTES_RE = re.compile(r"(?<!')''''(?!')")
_QUOTES_RE = re.compile(r"''+")
_MAGIC_WORD_RE = re.compile(r"__[A-ZÀ-ÖØ-Þ]+__")

_HEADING_RE = re.compile(r"\n(={1,6})[ \t]*(.+?)[ \t]*(={1,6})[ \t]*(?=\n|\Z)")
_LIST_MARKER_RE = re.compile(r"\n[ \t]*(?:[*#:;]+|-{4,})[ \t]*")

# Normalization runs once per section, so every step is guarded or matches only what it
# changes: a regex matching each single space or newline cost more than all other passes.
_WIDE_SPACES = ("\t", "\xa0", "\u2007", "\u2009", "\u202f")
_INVISIBLES = ("\u200b", "\u200e", "\u200f", "\ufeff", "\xad")
_MULTI_SPACE_RE = re.compile(r"  +")
_EMPTY_PARENS_RE = re.compile(r"\( ?[,;]? ?\)")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" (?=[,.;!?)])")


def clean_wikitext(wikitext: str) -> list[Section]:
    """Plain text of a page's wikitext, one ``Section`` per heading, empty sections left out.

    The lead is heading "" level 1; ``== H ==`` is level 2 and so on. Reference and navigation
    sections (``DROPPED_SECTIONS``) are dropped with their subsections.
    """
    text = "\n" + wikitext.replace("\r\n", "\n")
    if "<!--" in text:
        text = _COMMENT_RE.sub("", text)
    if "<" in text:
        text = _extension_tags(text)
    if "{{" in text:
        text = _strip_templates(text)
    text = text.replace("}}", "")
    if "{|" in text:
        text = _strip_tables(text)
    if "\n|" in text or "\n!" in text or "\n " in text:
        text = _TABLE_DEBRIS_RE.sub("\n", text)
    if "[" in text:
        text = _EXTERNAL_LINK_RE.sub(_external_link, text)
        text = _strip_links(text)
    if "<" in text:
        text = _BR_RE.sub("\n", text)
        text = _HTML_TAG_RE.sub("", text)
    if "''" in text:
        if "''''" in text:
            text = _FOUR_QUOTES_RE.sub("'", text)
        text = _QUOTES_RE.sub("", text)
    if "__" in text:
        text = _MAGIC_WORD_RE.sub("", text)
    text = _LIST_MARKER_RE.sub("\n", text)
    return _sections(text)


def _extension_tags(text: str) -> str:
    """Escape verbatim tags' content, drop non-prose tags with theirs, in one linear pass.

    Like MediaWiki's preprocessor, an opening tag runs to the next closing tag of its name,
    whatever lies between. An opening tag with no closing tag after it is deleted alone;
    knowing that up front (from the last closing position of each name) keeps the pass linear
    where a regex would rescan to the end of the page for every unclosed ``<ref>``.
    """
    tokens = [
        (m.start(), m.end(), m.group(1), m.group(2).lower(), m.group(3)) for m in _EXTENSION_TAG_RE.finditer(text)
    ]
    if not tokens:
        return text
    last_close: dict[str, int] = {}
    for start, _end, closing, name, _self_closing in tokens:
        if closing:
            last_close[name] = start
    out: list[str] = []
    pos = 0
    open_name = ""
    open_start = body_start = 0
    for start, end, closing, name, self_closing in tokens:
        if open_name:
            if closing and name == open_name:
                out.append(text[pos:open_start])
                if name in _VERBATIM_TAGS:
                    out.append(text[body_start:start].translate(_ESCAPE_TABLE))
                pos = end
                open_name = ""
        elif closing or self_closing or last_close.get(name, -1) < start:
            # Stray closing tag, empty element, or an opening tag nothing closes: the tag alone.
            out.append(text[pos:start])
            pos = end
        else:
            open_name, open_start, body_start = name, start, end
    out.append(text[pos:])
    return "".join(out)


def _strip_templates(text: str) -> str:
    if "{{{" in text:
        text = _PARAM_RE.sub("", text)
    # (start, end, is_template): outermost templates to drop or render, and brace pairs that
    # are only debris (stray closers, unclosed openers) to delete.
    spans: list[tuple[int, int, bool]] = []
    open_at: list[int] = []
    closed_inside_open: list[tuple[int, int, bool]] = []
    for match in _TEMPLATE_TOKEN_RE.finditer(text):
        start = match.start()
        if text[start] == "{":
            open_at.append(start)
        elif open_at:
            opener = open_at.pop()
            if open_at:
                closed_inside_open.append((opener, match.end(), True))
            else:
                spans.append((opener, match.end(), True))
                closed_inside_open.clear()
        else:
            # A stray closer renders as text in MediaWiki; as markup debris it is noise here.
            spans.append((start, match.end(), False))
    if open_at:
        # An unclosed "{{" is literal text to MediaWiki: delete just its two braces, so the
        # templates that closed after it become outermost instead of the rest of the page
        # being swallowed. Pairs close innermost first, so sorting by start and keeping those
        # that begin after the last kept one leaves the outermost.
        spans.extend((opener, opener + 2, False) for opener in open_at)
        last_end = 0
        for span in sorted(closed_inside_open):
            if span[0] >= last_end:
                spans.append(span)
                last_end = span[1]
        spans.sort()
    out: list[str] = []
    pos = 0
    for start, end, is_template in spans:
        out.append(text[pos:start])
        if is_template and _INLINE_TEMPLATE_RE.match(text, start):
            out.append(_render_inline_template(text[start + 2 : end - 2]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _template_args(body: str) -> list[str]:
    """Positional arguments of a template body (the part after the name), links kept whole."""
    if "[[" not in body:
        parts = body.split("|")
    else:
        parts = []
        last = 0
        for match in _LINK_IN_ARG_RE.finditer(body):
            if match.group() == "|":
                parts.append(body[last : match.start()])
                last = match.end()
        parts.append(body[last:])
    return [p.strip() for p in parts[1:] if not _NAMED_ARG_RE.match(p)]


def _render_inline_template(body: str) -> str:
    """The visible text of the few inline templates whose output is part of a sentence."""
    if "{{" in body:
        body = _strip_templates(body)
    name = body.split("|", 1)[0].strip().lower()
    if name.startswith("formatnum:"):
        return body.split(":", 1)[1].split("|", 1)[0].strip()
    if name == "ndash":
        return "–"
    if name == "mdash":
        return "—"
    args = _template_args(body)
    if not args:
        return ""
    if name in ("séc", "sec", "século", "seculo"):
        return "século " + args[0]
    if name == "lang":
        return args[1] if len(args) > 1 else ""
    if name in ("converter", "convert"):
        # {{converter|5|km|mi}} -> "5 km"; a range {{converter|5|a|10|km}} -> "5 a 10 km".
        if len(args) >= 4 and args[1] in ("-", "–", "a", "e", "to", "and", "ou", "or"):
            return " ".join(args[:4])
        return " ".join(args[:2])
    # lang-xx, nowrap, nobr, fmtn: the first argument is the text.
    return args[0]


def _strip_tables(text: str) -> str:
    out: list[str] = []
    pos = 0
    depth = 0
    start = 0
    for match in _TABLE_TOKEN_RE.finditer(text):
        # Tokens start at the newline before the line; that newline belongs to the text kept.
        line_start = match.start() + 1
        if match.group(1) == "{|":
            if depth == 0:
                out.append(text[pos:line_start])
                start = line_start
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                pos = match.end()
        else:
            out.append(text[pos:line_start])
            pos = match.end()
    if depth:
        # MediaWiki closes an unclosed table at the end of the page; stopping at the next
        # heading instead keeps the rest of the article when someone forgot a "|}".
        heading = _HEADING_LINE_RE.search(text, start)
        pos = heading.start() if heading else len(text)
    out.append(text[pos:])
    return "".join(out)


def _external_link(match: re.Match[str]) -> str:
    return match.group(1) or ""


def _link(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, bar, label = inner.partition("|")
    colon = target.find(":")
    if colon > 0:
        prefix = target[:colon].strip()
        if prefix.lower().replace("_", " ") in _DROPPED_NAMESPACES:
            return ""
        if not bar and _INTERWIKI_PREFIX_RE.fullmatch(prefix):
            return ""
    if bar:
        if label.strip():
            return label
        # Pipe trick: [[Foo (bar)|]] shows "Foo".
        target = target.lstrip(":")
        if ":" in target:
            target = target.split(":", 1)[1]
        return _PARENTHETICAL_RE.sub("", target)
    return target[1:] if target.startswith(":") else target


def _strip_links(text: str) -> str:
    # filter(None) drops the group that did not take part in each match.
    text = "".join(filter(None, _PLAIN_LINK_RE.split(text)))
    # Innermost first: a file caption's own links are resolved in one pass, so the file link is
    # innermost (and dropped whole) in the next. Real pages nest at most two or three deep.
    while "[[" in text:
        text, count = _LINK_RE.subn(_link, text)
        if not count:
            break
    return text.replace("[[", "").replace("]]", "")


def _fold(heading: str) -> str:
    decomposed = unicodedata.normalize("NFKD", heading.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.split()).strip(" :.")


def _normalize(text: str) -> str:
    if "&" in text:
        text = html.unescape(text)
    for char in _WIDE_SPACES:
        if char in text:
            text = text.replace(char, " ")
    for char in _INVISIBLES:
        if char in text:
            text = text.replace(char, "")
    if "  " in text:
        text = _MULTI_SPACE_RE.sub(" ", text)
    if "(" in text:
        # Parentheses emptied by template removal: "Berlim ({{Lang-de|...}}) é" -> "Berlim é".
        text = _EMPTY_PARENS_RE.sub("", text)
        if "( " in text:
            text = text.replace("( ", "(")
        if "  " in text:
            text = _MULTI_SPACE_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub("", text)
    # Lines stripped, runs of blank lines cut to one (a paragraph break): a plain loop over the
    # lines is cheaper than regexes that would match at every newline.
    lines: list[str] = []
    blank = False
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            blank = True
            continue
        if blank and lines:
            lines.append("")
        lines.append(line)
        blank = False
    return "\n".join(lines)


def _sections(text: str) -> list[Section]:
    raw: list[tuple[str, int, str]] = []
    heading, level, pos = "", 1, 0
    for match in _HEADING_RE.finditer(text):
        raw.append((heading, level, text[pos : match.start()]))
        opening, closing = match.group(1), match.group(3)
        level = min(len(opening), len(closing))
        # Unbalanced "== H ===": MediaWiki keeps the extra "=" as part of the title.
        heading = opening[level:] + match.group(2) + closing[level:]
        pos = match.end()
    raw.append((heading, level, text[pos:]))

    sections: list[Section] = []
    dropped_level = 0
    for heading, level, body in raw:
        if dropped_level:
            if level > dropped_level:
                continue
            dropped_level = 0
        # A heading that was only markup ("== {{Tradução}} ==") is left as bare "=" signs.
        title = _normalize(heading).strip("= ") if heading else ""
        if title and _fold(title) in DROPPED_SECTIONS:
            dropped_level = level
            continue
        body_text = _normalize(body)
        if not body_text:
            continue
        if title:
            sections.append(Section(heading=title, level=level, text=body_text))
        elif sections:
            # Text under a heading that cleaned to nothing continues the previous section, so
            # heading "" only ever means the lead.
            sections[-1].text += "\n\n" + body_text
        else:
            sections.append(Section(heading="", level=1, text=body_text))
    return sections
