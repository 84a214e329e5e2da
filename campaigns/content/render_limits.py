"""Bounds on rendering one template part: a wall-clock budget and an output size limit.

The sandbox already refuses unsafe attributes; these limits keep a template author from
hanging or exhausting preview, preflight and the workers, which share the render path:

- ``max_render_s``: a deadline checked at every loop iteration, every call (macros, methods,
  globals), every piece of output and every intercepted operator;
- ``max_part_bytes``: the rendered part (UTF-8), and every string or list a template builds
  (``'x' * n``, ``+``, ``~``, ``%``, ``.ljust(n)``, ``.replace``, ``|join``, ``|indent`` …),
  checked *before* the allocation where the operation could multiply its input; output
  captured by macros, ``{% set %}`` and ``{% filter %}`` blocks counts too (up to
  ``_BUFFERED_FACTOR`` times the limit, since that output is counted again when re-emitted);
- ``max_range``: items of one ``range()``; ``lipsum`` and integer powers have fixed caps.

``BoundedSandbox`` enforces them on code compiled from a tree passed through ``guard_tree``
and rendered with ``render_part``. A limit raises ``RenderLimitError`` inside the template's
frames, so the caller can name the template line.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.environment import Template
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum, pass_context

__all__ = ["RenderLimits", "RenderLimitError", "BoundedSandbox", "configure_limits",
           "current_limits", "guard_tree", "render_part"]

MAX_INT_BITS = 100_000        # results of integer * and ** (str() refuses > 4300 digits anyway)
MAX_LIPSUM_PARAGRAPHS = 100
MAX_LIPSUM_WORDS = 1_000      # per paragraph
_BUFFERED_FACTOR = 4
_LOOP, _EMIT, _SIZED = "_bounded_loop", "_bounded_output", "_bounded_size"


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """TOML ``[templates]``; per part (subject, HTML, text) of one message."""
    max_render_s: float = 2.0
    max_part_bytes: int = 2_000_000
    max_range: int = 10_000


class RenderLimitError(Exception):
    """A template went over a render limit; the message names the limit and its value."""


_limits = RenderLimits()


def configure_limits(limits: RenderLimits) -> None:
    """Set this process's limits (``load_settings`` does, through ``configure_from``)."""
    global _limits
    _limits = limits


def configure_from(templates: Any) -> None:
    """This process's limits from the typed ``[templates]`` table (a TemplatesConfig)."""
    configure_limits(RenderLimits(templates.max_render_s, templates.max_part_bytes,
                                  templates.max_range))


def current_limits() -> RenderLimits:
    return _limits


@dataclass(slots=True)
class _Budget:
    limits: RenderLimits
    deadline: float
    emitted: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


def _budget() -> _Budget:
    """The budget of the part being rendered (limits without a deadline outside one)."""
    return _BUDGET.get() or _Budget(_limits, float("inf"))


def _setting(limits: RenderLimits, key: str) -> str:
    return f"[templates] {key} = {getattr(limits, key)}"


def _tick(budget: _Budget | None = None) -> _Budget:
    budget = budget or _budget()
    if time.monotonic() > budget.deadline:
        raise RenderLimitError("rendering took longer than the limit "
                               f"({_setting(budget.limits, 'max_render_s')} s)")
    return budget


def _refuse_size(size: int, what: str, budget: _Budget) -> None:
    if size > budget.limits.max_part_bytes:
        raise RenderLimitError(f"{what} would be {size:,} long, over the limit "
                               f"({_setting(budget.limits, 'max_part_bytes')})")


def _check_sized(value: Any, what: str, budget: _Budget) -> Any:
    if isinstance(value, (str, bytes, list, tuple, dict, set)):
        _refuse_size(len(value), what, budget)
    return value


# --- globals -----------------------------------------------------------------------------

class _BoundedRange:
    """``range()`` for templates: at most ``max_range`` items, each step checks the clock."""

    __slots__ = ("_range",)

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        limits = _budget().limits
        if len(self._range) > limits.max_range:
            raise RenderLimitError(f"range of {len(self._range):,} items is over the limit "
                                   f"({_setting(limits, 'max_range')})")

    def __iter__(self) -> Iterator[int]:
        return _guarded_iter(self._range)

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __contains__(self, item: object) -> bool:
        return item in self._range

    def __repr__(self) -> str:
        return repr(self._range)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    if n > MAX_LIPSUM_PARAGRAPHS or max > MAX_LIPSUM_WORDS:
        raise RenderLimitError(f"lipsum is limited to {MAX_LIPSUM_PARAGRAPHS} paragraphs of "
                               f"at most {MAX_LIPSUM_WORDS} words (got n={n}, max={max})")
    return generate_lorem_ipsum(n, html, min, max)


def _guarded_iter(items: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in items:
        _tick(budget)
        yield item


class _GuardedLoop:
    """What a ``{% for %}`` iterates: the original items, with a clock check per item."""

    __slots__ = ("_items",)

    def __init__(self, items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return _guarded_iter(self._items)

    def __len__(self) -> int:
        if isinstance(self._items, Sized):
            return len(self._items)
        raise TypeError("no length")


@pass_context
def _loop_filter(context: Context, items: Any) -> Any:
    return _GuardedLoop(items)


@pass_context
def _emit_filter(context: Context, value: Any) -> Any:
    budget = _tick()
    if isinstance(value, str):
        budget.emitted += len(value)
        if budget.emitted > _BUFFERED_FACTOR * budget.limits.max_part_bytes:
            raise RenderLimitError(
                f"template output, counting output captured by macros and set/filter blocks, "
                f"is over {_BUFFERED_FACTOR} × the limit ({_setting(budget.limits, 'max_part_bytes')})")
    return value


@pass_context
def _sized_filter(context: Context, value: Any) -> Any:
    return _check_sized(value, "a '~' concatenation", _tick())


# --- operators, methods, filters ---------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)
_PERCENT_SPEC = re.compile(r"%[#0 +\-]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")
_DIGITS = re.compile(r"\d+")


def _check_binop(operator: str, left: Any, right: Any, budget: _Budget) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(times, int):
                _refuse_size(len(seq) * max(times, 0), "a '*' repetition", budget)
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"'*' would make a number over {MAX_INT_BITS:,} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(left.bit_length() - 1, 0) * right > MAX_INT_BITS:
            raise RenderLimitError(f"'**' would make a number over {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        values = right if isinstance(right, tuple) else (right,)
        _check_format(left, values, {}, budget, percent=True)


def _number(digits: str) -> int:
    return int(digits) if len(digits) < 19 else 10**19


def _check_format(fmt: str, args: Iterable[Any], kwargs: Mapping[str, Any], budget: _Budget,
                  *, percent: bool) -> None:
    """A width or precision in a format string, or passed to it by '*' (printf style) or a
    nested field (str.format), must not exceed the part limit: ``'%*d' % (10**9, 1)``,
    ``'{:>999999999}'.format(1)``. Numbers in the literal text do not count."""
    widths: list[int] = []
    if percent:
        specs = [g for m in _PERCENT_SPEC.finditer(fmt) for g in m.groups() if g]
        starred = "*" in specs
        widths = [_number(g) for g in specs if g != "*"]
    else:
        widths = [_number(d) for m in _BRACE_SPEC.finditer(fmt) for d in _DIGITS.findall(m[1])]
        starred = _NESTED_FIELD.search(fmt) is not None
    if starred:
        widths += [v for v in (*args, *kwargs.values()) if isinstance(v, int)]
    _refuse_size(max(widths, default=0), "a formatted width", budget)


def _grown_size(name: str, s: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """The size a string operation that can multiply its input would produce."""
    if name in ("ljust", "rjust", "center", "zfill") and args and isinstance(args[0], int):
        return max(args[0], len(s))
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(s) + s.count("\t") * size if isinstance(size, int) else len(s)
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) \
            and isinstance(args[1], str):
        count = len(s) + 1 if not args[0] else s.count(args[0])
        return len(s) + count * max(len(args[1]) - len(args[0]), 0)
    if name == "join" and args and isinstance(args[0], list):
        items = args[0]
        return sum(len(str(i)) for i in items) + len(s) * max(len(items) - 1, 0)
    return 0


def _check_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: Mapping[str, Any],
                  budget: _Budget) -> None:
    if name == "format" and isinstance(value, str):
        _check_format(value, rest, kwargs, budget, percent=True)
    elif name in ("center", "indent", "wordwrap", "batch", "slice", "truncate"):
        numbers = [v for v in (*rest, *kwargs.values()) if isinstance(v, int)]
        _refuse_size(max(numbers, default=0), f"the width given to |{name}", budget)
        texts = [v for v in (*rest, *kwargs.values()) if isinstance(v, str)]
        if name in ("indent", "wordwrap") and isinstance(value, str) and texts:
            pieces = value.count("\n") + 1 if name == "indent" else len(value) // max(
                min(numbers, default=1), 1) + 1      # indent('>>>'), wordwrap(wrapstring=…)
            _refuse_size(len(value) + pieces * max(map(len, texts)), f"|{name}", budget)
    elif name == "replace" and isinstance(value, str):
        _refuse_size(_grown_size("replace", value, rest, {}), "|replace", budget)
    elif name == "join" and isinstance(value, list) and rest and isinstance(rest[0], str):
        _refuse_size(_grown_size("join", rest[0], (value,), {}), "|join", budget)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the clock checked, widths and growth bounded, the result size checked."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _tick()
        if name == "join" and len(args) > skip and not isinstance(args[skip], (str, list)):
            args = (*args[:skip], list(args[skip]), *args[skip + 1:])   # to size it first
        if len(args) > skip:
            _check_filter(name, args[skip], args[skip + 1:], kwargs, budget)
        return _check_sized(func(*args, **kwargs), f"the result of |{name}", budget)

    return bounded


class BoundedSandbox(SandboxedEnvironment):
    """A SandboxedEnvironment enforcing the render limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _BoundedRange
        self.globals["lipsum"] = _lipsum
        self.filters.update({name: _bounded_filter(name, func) for name, func in FILTERS.items()})
        self.filters.update({_LOOP: _loop_filter, _EMIT: _emit_filter, _SIZED: _sized_filter})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _tick()
        _check_binop(operator, left, right, budget)
        result = super().call_binop(context, operator, left, right)
        return _check_sized(result, f"the result of '{operator}'", budget)

    def call(__self, __context: Context, __obj: Any,  # noqa: N805 - as in jinja2
             *args: Any, **kwargs: Any) -> Any:
        budget = _tick()
        receiver = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(receiver, str):
            if name == "join" and args and not isinstance(args[0], list):
                args = (list(args[0]), *args[1:])   # to size it before joining
            _refuse_size(_grown_size(name, receiver, args, kwargs), f"'.{name}()'", budget)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(receiver, (list, dict, set)):   # append, extend, update …
            _check_sized(receiver, f"a value grown by '.{name}()'", budget)
        return _check_sized(result, "a value returned by a call", budget)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, name = value.__self__, getattr(value, "__name__", "format")

        def checked(*args: Any, **kwargs: Any) -> str:
            budget = _tick()
            values = (*args, *args[0].values()) if name == "format_map" and args \
                and isinstance(args[0], Mapping) else args
            _check_format(fmt, values, kwargs, budget, percent=False)
            return str(_check_sized(wrapped(*args, **kwargs), "a formatted string", budget))

        return checked


# Output inside these is buffered, not yielded to render_part, which counts the rest.
_BUFFERING = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)


def guard_tree(tree: nodes.Template) -> nodes.Template:
    """Route every loop's items, every ``~`` operand and every piece of buffered output
    through the guards."""
    for loop in tree.find_all(nodes.For):
        loop.iter = _filter(_LOOP, loop.iter)
    for concat in tree.find_all(nodes.Concat):
        concat.nodes = [_filter(_SIZED, n) for n in concat.nodes]
    buffered = {id(output): output for block in tree.find_all(_BUFFERING)
                for output in block.find_all(nodes.Output)}
    for output in buffered.values():
        output.nodes = [_filter(_EMIT, n) for n in output.nodes]
    return tree


def _filter(name: str, node: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


def render_part(template: Template, context: Mapping[str, Any]) -> str:
    """Render ``template`` within the current limits; RenderLimitError (or the template's
    own error) is raised from the template's frames, so its line can be named."""
    limits = _limits
    token = _BUDGET.set(_Budget(limits, time.monotonic() + limits.max_render_s))
    try:
        generator = template.generate(context)
        assert isinstance(generator, Generator)    # a generator function, typed as Iterator
        return _collect(generator, limits)
    finally:
        _BUDGET.reset(token)


def _collect(generator: Generator[str, None, None], limits: RenderLimits) -> str:
    """The generated text, at most ``max_part_bytes`` in UTF-8; when over, the error is
    thrown into the generator, at the template line that wrote the last piece."""
    chunks: list[str] = []
    chars, quarter = 0, limits.max_part_bytes // 4
    for chunk in generator:     # characters first: 4 bytes each at most
        chunks.append(chunk)
        chars += len(chunk)
        if chars > quarter:
            break
    else:
        return "".join(chunks)
    size = len("".join(chunks).encode("utf-8", "surrogatepass"))
    while size <= limits.max_part_bytes:
        more = next(generator, None)
        if more is None:
            return "".join(chunks)
        chunks.append(more)
        size += len(more.encode("utf-8", "surrogatepass"))
    error = RenderLimitError(f"output over the limit ({_setting(limits, 'max_part_bytes')} bytes)")
    generator.throw(error)
    raise error
