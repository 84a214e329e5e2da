"""The text part of a template, derived from its HTML source: the words a reader sees, one
block per line, links kept, Jinja constructs intact (campaigns.content.templates uses it when
a template has no text part of its own)."""
from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

# --- HTML to text ------------------------------------------------------------------------
# html_to_text runs once on the *template source*. Jinja constructs are swapped for inert
# placeholders before the HTML is parsed (so "{{ a<b }}" is not taken for a tag and
# href="{{ unsubscribe_url }}" survives) and put back at the end. Block tags ({% if %},
# {% for %}) always survive, wherever they were, even inside a tag or a dropped <head>;
# they are "zero width": the line breaks due before them are written first, which keeps a
# {% for %} over <li> items at one item per line and an {% if %} around a paragraph from
# leaving an extra blank line.

_JINJA = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}.*?\{%[-+]?\s*endraw\s*[-+]?%\}"
                    r"|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_RAW = re.compile(r"\{%[-+]?\s*raw\b")
_WS_CONTROL = re.compile(r"^(\{[{%#])[-+]|[-+]([}%#]\})$")  # {%- ... -%}: HTML spacing only
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_LITERAL_OPEN = re.compile("\\{(?=[{%#\ue000])")  # '{{' from the HTML text, not Jinja
_WS = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200d\u2060\ufeff]")
_HIDDEN = re.compile(r"display\s*:\s*none", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_WS = re.compile(r"[ \t]+\n")
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                   "meta", "source", "track", "wbr"})
_BREAKS = {**dict.fromkeys(("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote",
                            "pre", "dl", "hr"), 2),
           **dict.fromkeys(("div", "tr", "td", "th", "dt", "dd", "li", "section", "article",
                            "header", "footer", "nav", "aside", "main", "address", "figure",
                            "figcaption", "form", "center", "caption"), 1)}


def html_to_text(html: str) -> str:
    """A plain-text alternative of an HTML body (or of an HTML *template*).

    Block elements and <br> become line breaks, paragraphs and headings are separated by a
    blank line, ``<a href="u">label</a>`` becomes ``label (u)`` (just ``u`` when the label is
    the URL), list items start with "- ", <script>/<style>/<head> and display:none elements
    are dropped, entities are unescaped and whitespace collapsed. Jinja syntax (``{{ x }}``,
    ``{% if %}``, ``href="{{ unsubscribe_url }}"``) comes out intact, so the result is itself
    a template; literal ``{{`` from the HTML text is escaped."""
    tokens: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tokens.append(_WS_CONTROL.sub(r"\1\2", match.group(0)))
        return f"\ue000{len(tokens) - 1}\ue001"

    converter = _TextConverter(tokens)
    converter.feed(_JINJA.sub(hide, html))
    converter.close()
    text = _TRAILING_WS.sub("\n", "".join(converter.out))
    text = _LITERAL_OPEN.sub('{{ "{" }}', _BLANK_LINES.sub("\n\n", text).strip())
    return _PLACEHOLDER.sub(lambda m: tokens[int(m.group(1))], text)


class _TextConverter(HTMLParser):
    """Collects text pieces in ``out``; line breaks are requested and merged lazily."""

    def __init__(self, tokens: list[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._tokens = tokens
        self._started = False      # some content was written
        self._want = 0             # line breaks requested since the last content
        self._newlines = 0         # line breaks written since the last content
        self._space = True         # last content ended with a space (or nothing yet)
        self._skip: str | None = None
        self._skip_depth = 0
        self._pre = 0
        self._lists = 0
        self._link: tuple[str, int] | None = None

    # -- writing
    def _break(self, count: int) -> None:
        if self._started:
            self._want = max(self._want, count)

    def _flush(self) -> None:
        extra = self._want - self._newlines
        if extra > 0:
            self.out.append("\n" * extra)
            self._newlines += extra

    def _content(self, text: str) -> None:
        self._flush()
        self.out.append(text)
        self._started, self._want, self._newlines = True, 0, 0
        self._space = text.endswith(" ")

    def _text(self, text: str) -> None:
        if self._pre:
            if text:
                self._content(text)
            return
        text = _WS.sub(" ", _INVISIBLE.sub("", text))
        if self._space or self._want or not self._started:
            text = text.lstrip(" ")
        if text:
            self._content(text)

    def _block_tags(self, source: str) -> None:
        """Write the Jinja block tags found in ``source`` (zero width), drop the rest."""
        for match in _PLACEHOLDER.finditer(source):
            if not self._is_output(int(match.group(1))):
                if self._started:
                    self._flush()
                self.out.append(match.group(0))

    def _is_output(self, token: int) -> bool:
        """{{ expression }} and {% raw %} write text; other tags and comments do not."""
        source = self._tokens[token]
        return source.startswith("{{") or _RAW.match(source) is not None

    def _data(self, data: str) -> None:
        for index, piece in enumerate(_PLACEHOLDER.split(data)):
            if index % 2 == 0:
                self._text(piece)
            elif self._is_output(int(piece)):
                self._content(f"\ue000{piece}\ue001")
            else:
                self._block_tags(f"\ue000{piece}\ue001")

    # -- parser callbacks
    def handle_data(self, data: str) -> None:
        if self._skip:
            self._block_tags(data)
        else:
            self._data(data)

    def handle_comment(self, data: str) -> None:
        self._block_tags(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._block_tags(self.get_starttag_text() or "")
        if self._skip:
            self._skip_depth += tag == self._skip
            if not (tag == "body" and self._skip == "head"):
                return
            self._skip = None
        attributes = {name: value or "" for name, value in attrs}
        if tag in _SKIP or _HIDDEN.search(attributes.get("style", "")):
            if tag not in _VOID:
                self._skip, self._skip_depth = tag, 1
            return
        self._start(tag, attributes)

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        if tag == "br":
            if self._started:
                self._flush()
                self.out.append("\n")
                self._newlines += 1
                self._want = self._newlines
        elif tag in ("ul", "ol"):
            self._break(1 if self._lists else 2)
            self._lists += 1
        elif tag == "li":
            self._break(1)
            self._content("  " * max(self._lists - 1, 0) + "- ")
        elif tag == "a":
            self._link = (_WS.sub("", attributes.get("href", "")), len(self.out))
        elif tag == "img":
            self._data(attributes.get("alt", ""))
        else:
            self._break(_BREAKS.get(tag, 0))
            if tag == "hr":
                self._content("-" * 20)
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            self._skip_depth -= tag == self._skip
            if self._skip_depth <= 0:
                self._skip = None
            return
        if tag in ("ul", "ol"):
            self._lists = max(self._lists - 1, 0)
            self._break(1 if self._lists else 2)
        elif tag == "a":
            self._end_link()
        else:
            self._break(_BREAKS.get(tag, 0))
            self._pre -= tag == "pre" and self._pre > 0

    def _end_link(self) -> None:
        if self._link is None:
            return
        href, start = self._link
        self._link = None
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        label = "".join(self.out[start:]).strip()
        if not label:
            self._content(href)
        elif label not in (href, href.removeprefix("mailto:"), href.removeprefix("tel:")):
            self._content(f"({href})" if self._space else f" ({href})")

