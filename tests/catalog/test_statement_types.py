"""Statements built once at import carry real types for their parameters, whatever was
imported before them: a foreign key's type is NullType until the referenced table is known,
and a UUID bound as NullType reaches SQLite unconverted ("type 'UUID' is not supported";
`storefront seed` failed that way once the import order changed)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from sqlalchemy.types import NullType
from storefront.catalog import reads, repository
for name, statement in (
    ("catalog.repository._TAKE_STOCK", repository._TAKE_STOCK),
    ("catalog.reads._ACTIVE_PRODUCT", reads._ACTIVE_PRODUCT),
):
    untyped = [k for k, v in statement.compile().binds.items() if isinstance(v.type, NullType)]
    assert not untyped, (name, untyped)
print("ok")
"""


def test_statements_built_at_import_have_typed_parameters() -> None:
    # a fresh interpreter: in this one the tests already imported every table
    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed probe
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
