"""Orders as served: an order row and its lines shaped as ``OrderOut``, and a page of them
as the bytes of ``Page[OrderOut]``'s JSON (addresses opened through ``sealing``)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.orders.models import Order
from storefront.orders.schemas import OrderLineOut, OrderOut
from storefront.orders.sealing import open_addresses
from storefront.vault import PersonalDataVault


def order_out(order: Any, lines: Sequence[Any], address: dict[str, Any] | None) -> OrderOut:
    """An order row (ORM object or plain row) and its lines, as served; rows are already
    typed (no validation)."""
    return OrderOut.model_construct(
        id=order.id,
        shop_id=order.shop_id,
        customer_id=order.customer_id,
        status=order.status,
        currency=order.currency,
        total_cents=order.total_cents,
        lines=[
            OrderLineOut.model_construct(
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                unit_price_cents=line.unit_price_cents,
                quantity=line.quantity,
                line_total_cents=line.line_total_cents,
            )
            for line in lines
        ],
        shipping_address=address,
        customer_erased=address is None,
        created_at=order.created_at,
        updated_at=order.updated_at,
        expires_at=order.expires_at,
    )


def order_json_dict(
    order: Any, lines: Sequence[Any], address: dict[str, Any] | None
) -> dict[str, Any]:
    """``order_out`` as a plain dict for orjson: the same keys in the same order, so
    ``orjson.dumps(..., option=orjson.OPT_UTC_Z)`` gives the bytes of ``OrderOut``'s JSON
    (UUIDs hyphenated, the status its value, datetimes ISO 8601 with ``Z`` for UTC)."""
    return {
        "id": order.id,
        "shop_id": order.shop_id,
        "customer_id": order.customer_id,
        "status": order.status,
        "currency": order.currency,
        "total_cents": order.total_cents,
        "lines": [
            {
                "product_id": line.product_id,
                "sku": line.sku,
                "name": line.name,
                "unit_price_cents": line.unit_price_cents,
                "quantity": line.quantity,
                "line_total_cents": line.line_total_cents,
            }
            for line in lines
        ],
        "shipping_address": address,
        "customer_erased": address is None,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "expires_at": order.expires_at,
    }


# the keys of order_json_dict, in its order: the order's first ones, its lines', its last ones
_ORDER_HEAD = ("id", "shop_id", "customer_id", "status", "currency", "total_cents")
_LINE_KEYS = ("product_id", "sku", "name", "unit_price_cents", "quantity", "line_total_cents")
_ORDER_TAIL = ("created_at", "updated_at", "expires_at")
_Getter = Callable[[Any], tuple[Any, ...]]


@functools.cache
def _getters(order_fields: tuple[str, ...], line_fields: tuple[str, ...]) -> tuple[_Getter, ...]:
    """Positional getters of order_json_dict's values for rows with these fields: a row's
    attribute access looks the name up on every call, and a page reads about 30 of them per
    order (the row's positions are the same for every row of one statement)."""
    order_at = {name: i for i, name in enumerate(order_fields)}
    line_at = {name: i for i, name in enumerate(line_fields)}
    return (
        itemgetter(*(order_at[name] for name in _ORDER_HEAD)),
        itemgetter(*(line_at[name] for name in _LINE_KEYS)),
        itemgetter(*(order_at[name] for name in _ORDER_TAIL)),
    )


def _rows_json_dicts(
    items: Sequence[tuple[Row[Any], Sequence[Row[Any]], dict[str, Any] | None]],
) -> list[dict[str, Any]]:
    """``order_json_dict`` of each item, for rows of one statement (the same fields in every
    order row, and in every line row)."""
    first_order = items[0][0]
    first_line = next((lines[0] for _, lines, _ in items if lines), first_order)
    head, line, tail = _getters(first_order._fields, first_line._fields)
    out = []
    for order, lines, address in items:
        value = dict(zip(_ORDER_HEAD, head(order), strict=True))
        value["lines"] = [dict(zip(_LINE_KEYS, line(row), strict=True)) for row in lines]
        value["shipping_address"] = address
        value["customer_erased"] = address is None
        value.update(zip(_ORDER_TAIL, tail(order), strict=True))
        out.append(value)
    return out


def _json_default(value: object) -> str:
    # asyncpg returns its own uuid.UUID subclass, which orjson does not take as a UUID
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def page_json(
    items: Sequence[tuple[Any, Sequence[Any], dict[str, Any] | None]], next_cursor: str | None
) -> bytes:
    """(order, its lines, its address) of a page as the bytes of ``Page[OrderOut]``'s JSON
    (what FastAPI's response model would send), without building pydantic models."""
    if items and isinstance(items[0][0], Row):
        # the rows of a page statement (OrderRepository.list_rows): read by position
        dicts = _rows_json_dicts(cast(Sequence[tuple[Row[Any], Sequence[Row[Any]], Any]], items))
    else:
        dicts = [order_json_dict(order, lines, address) for order, lines, address in items]
    return orjson.dumps(
        {"items": dicts, "next_cursor": next_cursor},
        default=_json_default,
        option=orjson.OPT_UTC_Z,
    )


async def orders_page_json(
    session: AsyncSession,
    page: Sequence[tuple[Any, Sequence[Any]]],
    next_cursor: str | None,
    *,
    vault: PersonalDataVault,
) -> bytes:
    """A page of (order row, its line rows) as served, addresses opened in one go
    (decision 0060, "Order paths")."""
    addresses = await open_addresses(session, [order for order, _ in page], vault=vault)
    return page_json(
        [(order, lines, address) for (order, lines), address in zip(page, addresses, strict=True)],
        next_cursor,
    )


async def orders_out(
    session: AsyncSession, orders: Sequence[Order], *, vault: PersonalDataVault
) -> list[OrderOut]:
    """Orders with their lines loaded, as served (addresses opened in one go)."""
    addresses = await open_addresses(session, orders, vault=vault)
    return [
        order_out(order, order.lines, address)
        for order, address in zip(orders, addresses, strict=True)
    ]


async def order_json(session: AsyncSession, order: Order, *, vault: PersonalDataVault) -> bytes:
    """One order with its lines loaded as the bytes of ``OrderOut``'s JSON (what
    ``orders_out(...)[0].model_dump_json()`` gives), without building pydantic models."""
    (address,) = await open_addresses(session, [order], vault=vault)
    return orjson.dumps(
        order_json_dict(order, order.lines, address),
        default=_json_default,
        option=orjson.OPT_UTC_Z,
    )
