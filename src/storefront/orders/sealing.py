"""Orders' personal data at rest: the shipping address (name, street, phone...) is sealed
with the customer's data key and bound to its order. Once the customer is erased (their key
destroyed) the order reads anonymised: no address, ``customer_erased: true``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.orders.models import Order
from storefront.orders.schemas import OrderLineOut, OrderOut
from storefront.platform.crypto import PersonalDataVault, vault_of

# one batch read keeps at most this many customers' keys cached (a long export stream)
MAX_CACHED_KEYS = 10_000


def address_aad(order_id: uuid.UUID) -> str:
    return f"orders.shipping_address:{order_id}"


async def seal_address(
    session: AsyncSession,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    address: dict[str, Any],
    *,
    vault: PersonalDataVault | None = None,
) -> str:
    vault = vault or vault_of(session)
    plaintext = json.dumps(address, separators=(",", ":"), ensure_ascii=False)
    return await vault.seal_for(session, customer_id, plaintext, aad=address_aad(order_id))


async def open_addresses(
    session: AsyncSession,
    rows: Sequence[Any],
    *,
    vault: PersonalDataVault | None = None,
) -> list[dict[str, Any] | None]:
    """The address of each order (anything with ``id``, ``customer_id`` and
    ``shipping_address_sealed``), None for an erased customer. One query at most, for the
    keys of every customer not seen yet in this session."""
    vault = vault or vault_of(session)
    opened = await vault.open_many(
        session,
        [(row.customer_id, row.shipping_address_sealed, address_aad(row.id)) for row in rows],
    )
    out: list[dict[str, Any] | None] = []
    for text in opened:
        value = None if text is None else json.loads(text)
        out.append(value if isinstance(value, dict) else None)
    return out


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
    }


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
    return orjson.dumps(
        {
            "items": [order_json_dict(order, lines, address) for order, lines, address in items],
            "next_cursor": next_cursor,
        },
        default=_json_default,
        option=orjson.OPT_UTC_Z,
    )


async def orders_page_json(
    session: AsyncSession, page: Sequence[tuple[Any, Sequence[Any]]], next_cursor: str | None
) -> bytes:
    """A page of (order row, its line rows) as served, addresses opened in one go
    (decision 0060, "Order paths")."""
    addresses = await open_addresses(session, [order for order, _ in page])
    return page_json(
        [(order, lines, address) for (order, lines), address in zip(page, addresses, strict=True)],
        next_cursor,
    )


async def orders_out(session: AsyncSession, orders: Sequence[Order]) -> list[OrderOut]:
    """Orders with their lines loaded, as served (addresses opened in one go)."""
    addresses = await open_addresses(session, orders)
    return [
        order_out(order, order.lines, address)
        for order, address in zip(orders, addresses, strict=True)
    ]
