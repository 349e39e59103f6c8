"""CSV a spreadsheet opens without running anything: the one writer for every CSV the service
produces (decision 0096, after OWASP's "CSV Injection" guidance).

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK(...)`` leaks data, ``+cmd|' /C calc'!A0`` runs a program through DDE), and a
leading tab, carriage return or line feed, or leading spaces, can hide such a start. So:

- a text cell whose first character is a tab, CR or LF, or whose first non-whitespace
  character is one of ``= + - @`` (or their full-width forms, which some spreadsheets
  normalise), is prefixed with a single quote (shown as text, never evaluated);
- every text cell is quoted (``csv.QUOTE_NONNUMERIC``), numbers are not: the columns the
  service writes as numbers (``int``: amounts, quantities) stay numbers, a negative one
  included, because they are never text a user chose.

The prefix changes the value a program reads back (``'+44 20 ...``); consumers that want the
exact values use the NDJSON export, which is not a spreadsheet format and is left as it is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

_FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")  # and full-width = + - @
_CONTROL_START = frozenset("\t\r\n")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def neutralise(cell: Any) -> Any:
    """``cell`` as a spreadsheet may safely open it: text that would start a formula gets a
    leading single quote; numbers and other text are unchanged."""
    if not isinstance(cell, str) or not cell:
        return cell
    if cell[0] in _CONTROL_START or cell.lstrip()[:1] in _FORMULA_START:
        return "'" + cell
    return cell


class SafeCsvWriter:
    """``csv.writer`` (RFC 4180: CRLF, quotes doubled) with every cell neutralised and every
    text cell quoted. Write ``int`` for numeric columns, ``str`` for everything else."""

    def __init__(self, out: _Writable) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])
