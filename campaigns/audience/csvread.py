"""Reading a contacts CSV: the pre-scan (identity, line count, UTF-8 checked before anything
is written), the header, and the numbered rows with their physical line numbers.

`scan` reads the whole file once, in blocks: its SHA-256 (the identity a resumed import is
matched by), its size and its number of lines (the progress bar's total), and whether it is
UTF-8. An import writes in committed batches, so a file that is not UTF-8 must be refused
before the first batch, not at the bad byte: that keeps "a file that cannot be used at all
changes nothing"."""
from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from campaigns.errors import InputError

EMAIL_HEADERS = ("email", "e-mail")
DELIMITERS = (",", ";", "\t")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileScan:
    size: int
    sha256: str
    lines: int   # physical lines (a last line without "\n" counts)


def scan(path: Path, file: str) -> FileScan:
    """Size, SHA-256 and line count of the file; InputError (as the line-by-line reading
    would raise it) when it is not UTF-8. OSError when it cannot be read."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    size = lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            size, lines, last = size + len(block), lines + block.count(b"\n"), block[-1:]
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                break
        else:
            try:
                decoder.decode(b"", final=True)
                return FileScan(size, digest.hexdigest(), lines + (last != b"\n"))
            except UnicodeDecodeError:
                pass
    with path.open("rb") as handle:   # the exact error, with its line and byte offset
        for _ in _decoded_lines(handle, file):
            pass
    raise InputError("not valid UTF-8; save it as 'CSV UTF-8' and import it again", file=file)


# --- reading the file -------------------------------------------------------------------

@dataclass(frozen=True)
class _Header:
    line: int
    width: int
    email_index: int
    email_name: str
    attributes: tuple[tuple[int, str], ...]  # (column index, attribute name)


_Row = tuple[int, list[str], str]  # (line the row starts on, cells, parse error or "")


def _decoded_lines(handle: BinaryIO, file: str) -> Iterator[str]:
    """The file's physical lines, decoded. UTF-8 is decoded line by line, which is exact:
    the byte "\\n" never occurs inside a multi-byte sequence."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(_UTF16_BOMS):
            raise InputError("the file is UTF-16; save it as 'CSV UTF-8' and import it again",
                             file=file, line=1)
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, offset = raw[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            byte = raw[err.start:err.start + 1]
            raise InputError(
                f"not valid UTF-8: byte {byte!r} at byte offset {offset + err.start} (byte "
                f"{err.start + 1} of the line); the file is probably Windows-1252 or Latin-1: save it as "
                "'CSV UTF-8' and import it again", file=file, line=number) from None
        offset += len(raw)


def _open_csv(lines: Iterator[str], file: str) -> tuple[_Header, Iterator[_Row]]:
    """Read up to the header, check it, and return it with the numbered data rows."""
    skipped = 0
    first = next(lines, None)
    while first is not None and not first.strip():
        skipped, first = skipped + 1, next(lines, None)
    if first is None:
        raise InputError("the file is empty; expected a header line with an 'email' column",
                         file=file)
    reader = csv.reader(itertools.chain([first], lines), delimiter=_delimiter(first),
                        strict=True)
    numbered = _numbered(reader, skipped)
    line, cells, problem = next(numbered)
    if problem:
        raise InputError(f"the header: {problem}", file=file, line=line)
    return _parse_header(cells, line, file), numbered


def _delimiter(header: str) -> str:
    """The delimiter that splits the header line into an email column and the most other
    columns (`,` first on a tie: a one-column file)."""
    def score(delimiter: str) -> tuple[bool, int]:
        try:
            cells = next(csv.reader([header], delimiter=delimiter), [])
        except csv.Error:   # reported with its line when the header is parsed
            return False, 0
        return any(c.strip().lower() in EMAIL_HEADERS for c in cells), len(cells)
    return max(DELIMITERS, key=score)


def _numbered(reader: Any, skipped: int) -> Iterator[_Row]:
    """Rows with the physical line each starts on. `reader.line_num` counts lines read so
    far, so it gives where a row ends; a row starts just after the previous one ended.
    The reader is strict, so an unclosed quote is an error, not a field swallowing the rest
    of the file; after an error the reader goes on with the next line."""
    done = 0
    while True:
        start = skipped + done + 1
        try:
            cells, problem = next(reader), ""
        except StopIteration:
            return
        except csv.Error as err:
            cells, problem = [], _csv_problem(err)
        done = reader.line_num
        yield start, cells, problem


def _csv_problem(err: csv.Error) -> str:
    if "field limit" in str(err):  # _csv's "field larger than field limit (131072)"
        return (f"a field is longer than {csv.field_size_limit():,} characters; is this a CSV "
                "file, with its quotes closed?")
    return f"cannot parse this row ({err}): check its quotes"


def _column(index: int) -> str:
    """Position as a person sees it in a spreadsheet: 'column 3 (C)'."""
    letters, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"column {index + 1} ({letters})"


def _parse_header(cells: list[str], line: int, file: str) -> _Header:
    names = [c.strip() for c in cells]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            raise InputError(f"{_column(index)} has an empty header; every column needs a "
                             "name", file=file, line=line)
        key = name.lower() if name.lower() not in EMAIL_HEADERS else "email"
        if key in seen:
            raise InputError(f"{_column(index)} '{name}' repeats {_column(seen[key])} "
                             f"'{names[seen[key]]}'; header names must be unique",
                             file=file, line=line)
        seen[key] = index
    if "email" not in seen:
        raise InputError(f"no 'email' column; the header has: {', '.join(names)}",
                         file=file, line=line)
    email_index = seen["email"]
    attributes = tuple((i, n) for i, n in enumerate(names) if i != email_index)
    return _Header(line, len(names), email_index, names[email_index], attributes)
