"""CSV we write is safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is taken for a
formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(…)``, ``+SUM(…)``, ``@cmd``,
``-2+3``): OWASP's "CSV injection" rule is to prefix such a cell with a single quote, which
spreadsheets show as text. A cell that already starts with quotes before one of those
characters gets one more, so ``unescape_cell`` gives back exactly what was written: our own
imports (``suppressions import``) read an export back unchanged.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

__all__ = ["FORMULA_STARTS", "SafeWriter", "escape_cell", "unescape_cell"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def escape_cell(value: object) -> str:
    """``value`` as text, with a quote prefixed when a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    return "'" + text if _FORMULA.match(text) else text


def unescape_cell(text: str) -> str:
    """The inverse of ``escape_cell``: one leading quote before a formula start is removed."""
    return text[1:] if text.startswith("'") and _FORMULA.match(text) else text


class SafeWriter:
    """``csv.writer`` whose every cell goes through ``escape_cell``: the one way this package
    writes CSV."""

    def __init__(self, out: IO[str], **fmtparams: Any) -> None:
        self._writer = csv.writer(out, **fmtparams)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([escape_cell(cell) for cell in row])
