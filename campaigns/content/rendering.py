"""Template rendering: Jinja2 in a sandbox, compiled once per template, rendered per contact.

A campaign template has three parts: a subject, an HTML body and a text body. Each part is
compiled once (``compile_template``) and the resulting ``CompiledTemplate`` is reused for every
message of the campaign; rendering then costs a fraction of a millisecond.

Templates run in ``jinja2.sandbox.SandboxedEnvironment`` with strict undefined handling: a
variable the context lacks (``{{ contact.first_name }}`` for a list without that column) is an
error naming the template, the part, the line and the variable, never an empty string.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from html.parser import HTMLParser
from types import TracebackType
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import StrictUndefined
from jinja2.utils import missing

from campaigns.errors import InputError, TemplateRenderError
from campaigns.content.render_limits import BoundedSandbox, RenderLimitError, guard_tree, render_part

__all__ = ["Rendered", "CompiledTemplate", "compile_template", "html_to_text", "build_context"]

# Runs of whitespace that contain at least one control character (CR, LF, TAB, NUL, C1
# controls, Unicode line/paragraph separators) become one space in a subject.
_CONTROL_RUN = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]*[\x00-\x1f\x7f-\x9f\u2028\u2029]"
    r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]*"
)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One contact's rendered message parts.

    ``subject`` is a single line: control characters (CR, LF, ...) are collapsed to one space
    and the result stripped, so template data cannot inject header lines."""

    subject: str
    html: str
    text: str


class Record:
    """A read-only namespace for templates: ``contact.city`` and ``contact["Column Name"]``.

    It has no public attributes of its own, so a column called ``items`` or ``keys`` reads
    the column, and a missing key is reported as ``<label>.<key>`` (e.g. ``contact.city``)."""

    __slots__ = ("_label", "_values")

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        self._label = label
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<{self._label}>"


class _UndefinedVariable(UndefinedError):
    """An UndefinedError that knows the dotted name of the missing variable."""

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class _StrictUndefined(StrictUndefined):
    """StrictUndefined whose error carries the variable's dotted name (``contact.city``)."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                 exc: type[Exception] = UndefinedError) -> None:
        if exc is UndefinedError:  # keep SecurityError & co. from the sandbox as they are
            exc = partial(_UndefinedVariable, variable=_dotted_name(obj, name))  # type: ignore[assignment]
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if self._undefined_hint is None and isinstance(obj, Record):
            known = ", ".join(sorted(obj)[:20]) or "none"
            return f"{obj._label} has no '{self._undefined_name}'; it has: {known}"
        return str(StrictUndefined._undefined_message.__get__(self))


def _dotted_name(obj: Any, name: str | None) -> str:
    if isinstance(obj, Record):
        return f"{obj._label}.{name}" if str(name).isidentifier() else f"{obj._label}[{name!r}]"
    return str(name)


def _autoescape(template_name: str | None) -> bool:
    """Only the HTML part is autoescaped; parts are compiled as '<template>:<part>'."""
    return bool(template_name and template_name.endswith(":html"))


# One environment per process; templates are compiled from strings, never loaded. The
# sandbox is bounded in time and size (campaigns.content.render_limits, TOML [templates]).
_ENV = BoundedSandbox(undefined=_StrictUndefined, autoescape=_autoescape,
                            auto_reload=False, cache_size=0)


class CompiledTemplate:
    """A campaign template compiled once; ``render`` is called once per message."""

    __slots__ = ("name", "text_generated", "_parts")

    def __init__(self, name: str, parts: Mapping[str, Template], *, text_generated: bool) -> None:
        self.name = name
        self.text_generated = text_generated  # True when the text part came from html_to_text
        self._parts = (parts["subject"], parts["html"], parts["text"])

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Render all three parts for one contact (see ``build_context``).

        Raises TemplateRenderError naming template, part and line (and the variable when one
        is undefined); a sandbox violation says the operation is not allowed in templates;
        a part over a render limit (time, size, range) names the limit and its value."""
        subject_t, html_t, text_t = self._parts
        part = "subject"
        try:
            subject = _CONTROL_RUN.sub(" ", render_part(subject_t, context)).strip()
            part = "html"
            html = render_part(html_t, context)
            part = "text"
            text = render_part(text_t, context)
        except Exception as err:
            raise _render_error(self.name, part, err) from err
        return Rendered(subject=subject, html=html, text=text)

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.name!r})"


def compile_template(name: str, subject: str, html: str, text: str | None) -> CompiledTemplate:
    """Compile the three parts of template ``name`` once.

    When ``text`` is None the text part is derived from the HTML source with
    ``html_to_text`` (Jinja syntax survives the conversion) and compiled like the others.
    A syntax error raises TemplateRenderError(template=name, part=..., line=N)."""
    text_generated = text is None
    sources = {"subject": subject, "html": html,
               "text": html_to_text(html) if text is None else text}
    compiled = {part: _compile_part(name, part, source, derived=text_generated and part == "text")
                for part, source in sources.items()}
    return CompiledTemplate(name, compiled, text_generated=text_generated)


def _compile_part(name: str, part: str, source: str, *, derived: bool) -> Template:
    # The filename ends up in the traceback frames jinja rewrites at render time, which is
    # how a runtime error is mapped back to a line of this part (see _template_line).
    filename = f"{name}:{part}"
    try:
        tree = guard_tree(_ENV.parse(source, name=filename, filename=filename))
        code = _ENV.compile(tree, name=filename, filename=filename)
    except TemplateSyntaxError as err:
        where = "in the text derived from the HTML part: " if derived else ""
        raise TemplateRenderError(f"syntax error: {where}{err.message}", template=name,
                                  part=part, line=err.lineno) from err
    return _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)


def _render_error(name: str, part: str, err: Exception) -> TemplateRenderError:
    line = _template_line(err.__traceback__, f"{name}:{part}")
    if isinstance(err, _UndefinedVariable):
        return TemplateRenderError(str(err), template=name, part=part, line=line,
                                   variable=err.variable)
    if isinstance(err, RenderLimitError):
        message = f"render limit: {err}"
    elif isinstance(err, SecurityError):
        message = f"operation not allowed in templates: {err}"
    elif isinstance(err, UndefinedError):
        message = str(err)
    else:
        message = f"{type(err).__name__}: {err}"
    return TemplateRenderError(message, template=name, part=part, line=line)


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    """Line of the innermost traceback frame jinja attributed to ``filename``."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def build_context(*, email: str, attributes: Mapping[str, str], campaign_name: str,
                  unsubscribe_url: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The variables a template sees for one contact.

    ``contact.email``, ``contact.<column>`` for each list attribute (also
    ``contact["Column With Spaces"]``), ``campaign.name``, ``unsubscribe_url``, plus any
    ``extra`` top-level names (which may not shadow those four)."""
    context: dict[str, Any] = {
        "contact": Record("contact", {**attributes, "email": email}),
        "campaign": Record("campaign", {"name": campaign_name}),
        "unsubscribe_url": unsubscribe_url,
    }
    if extra:
        clash = sorted(set(extra) & set(context))
        if clash:
            raise InputError(f"names reserved for the template context: {', '.join(clash)}",
                             field="extra")
        context.update(extra)
    return context


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

