"""The order listing serialises its page itself (orders_page_json): the bytes must be those
FastAPI's response model (Page[OrderOut]) would send."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter

from storefront.orders.models import OrderStatus
from storefront.orders.schemas import OrderOut
from storefront.orders.serialise import order_out, page_json
from storefront.web.pagination import Page

TRICKY = 'Zoë "quoted" \\ back\nline\ttab\x00\x1f\x7f é 😀 \u2028 </script>'


class DriverUuid(uuid.UUID):
    """Like asyncpg's UUID: a subclass orjson does not take natively."""


def order(created: datetime, *, customer: uuid.UUID | None) -> Any:
    return SimpleNamespace(
        id=DriverUuid(str(uuid.uuid4())),
        shop_id=uuid.uuid4(),
        customer_id=customer,
        status=OrderStatus.pending,
        currency="EUR",
        total_cents=2**40,
        created_at=created,
        updated_at=created + timedelta(microseconds=1),
        expires_at=created + timedelta(minutes=30),
    )


def line(name: str) -> Any:
    return SimpleNamespace(
        product_id=DriverUuid(str(uuid.uuid4())),
        sku="SKU-1",
        name=name,
        unit_price_cents=123,
        quantity=2,
        line_total_cents=246,
    )


@pytest.mark.parametrize(
    "created",
    [
        datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 120, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 123456),  # naive
        datetime(2026, 11, 29, 10, 0, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    ],
)
@pytest.mark.parametrize("next_cursor", [None, "abc_-"])
def test_page_bytes_match_the_response_model(created: datetime, next_cursor: str | None) -> None:
    legacy = order(created, customer=None)
    legacy.expires_at = None  # placed before orders expired (migration 0008)
    rows = [
        (
            order(created, customer=uuid.uuid4()),
            [line(TRICKY), line("plain")],
            {
                "name": TRICKY,
                "line1": "1 Street",
                "line2": None,
                "country": "DE",
            },
        ),
        (legacy, [], None),  # an erased customer's order
    ]
    expected = TypeAdapter(Page[OrderOut]).dump_json(
        Page[OrderOut](
            items=[order_out(o, lines, address) for o, lines, address in rows],
            next_cursor=next_cursor,
        )
    )
    assert page_json(rows, next_cursor) == expected


def test_unknown_types_are_refused() -> None:
    row = order(datetime(2026, 11, 29, tzinfo=UTC), customer=None)
    row.currency = object()
    with pytest.raises(TypeError):
        page_json([(row, [], None)], None)
