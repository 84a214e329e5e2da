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
from types import TracebackType
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import StrictUndefined
from jinja2.utils import missing

from campaigns.errors import InputError, TemplateRenderError
from campaigns.content.html_text import html_to_text
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
