"""The value types a request may carry: every string and integer a client sends goes through
one of these, so the rules below hold at the edge for every route (decisions 0095, 0099).

- :data:`STORABLE` (and :data:`Text`, a ``str`` carrying it): text the database can store.
  PostgreSQL ``text`` cannot hold NUL (U+0000), and a lone UTF-16 surrogate (U+D800..U+DFFF,
  which JSON's ``\\udXXX`` escapes can produce) has no UTF-8 form at all: either reached the
  driver and answered 500. Both are refused with a 422 naming the field. Every string field
  of a request body and every string query, path, header or form parameter carries it
  (``tests/kit/test_inputs.py`` walks the routes and fails on a plain ``str``). With
  constraints, put it **last**: ``Annotated[str, StringConstraints(...), STORABLE]``. Placed
  before them (``Annotated[Text, StringConstraints(...)]``) it turns the string schema into
  a function, and pydantic then checks the lengths before stripping (``"   "`` passes
  ``min_length=1``) with "items" messages; the test refuses that order too.
- :data:`StrictInt`: an ``int`` in a request body that is a JSON integer, nothing else:
  ``true``, ``"12"`` and ``12.0`` are refused (pydantic's lax mode would read them as 1 and
  12). Query and path parameters stay lax on purpose: they only exist as text.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Strict

_T = TypeVar("_T")

# NUL and the surrogate code points: what no PostgreSQL text column (and no UTF-8) can hold
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: _T) -> _T:
    """``value`` unchanged, or ValueError if it is text holding a character the database
    cannot store (anything else, such as the None of an optional parameter, passes)."""
    if not isinstance(value, str):
        return value
    found = _UNSTORABLE.search(value)
    if found is not None:
        if found.group() == "\x00":
            raise ValueError("must not contain the NUL character (U+0000)")
        raise ValueError(
            "must be valid Unicode text: a lone surrogate (U+D800..U+DFFF) is not a character"
        )
    return value


STORABLE = AfterValidator(storable)

# Control characters (C0, DEL, C1: a line break, an escape sequence that repaints a terminal
# reading the logs or an export) and the bidirectional overrides, embeddings and isolates
# ("Trojan Source": U+202E makes "gpj.exe" read "exe.jpg") have no place in a one-line
# name that other people read: a shop's name, a product's, a customer's on a packing slip.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def one_line(value: str) -> str:
    """``value`` unchanged, or ValueError if it holds a control or bidi-override character."""
    found = _NOT_ONE_LINE.search(value)
    if found is not None:
        raise ValueError(
            f"must be one line of visible text: U+{ord(found.group()):04X} is a control "
            "or text-direction character"
        )
    return value


ONE_LINE = AfterValidator(one_line)
Text = Annotated[str, STORABLE]
StrictInt = Annotated[int, Strict()]
