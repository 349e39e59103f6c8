"""Helpers for the order, isolation and concurrency tests: URLs, problem checks, DB state.

Database state is read straight from the tables (never through the API under test), so a
test can tell "the API said nothing changed" from "nothing changed".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
from sqlalchemy import func, select, update

from storefront.catalog.models import Product
from storefront.idempotency import IdempotencyRecord, fingerprint
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.orders.schemas import OrderIn
from storefront.resources import Resources
from tests.support.factories import V1
from tests.support.problems import assert_problem as assert_problem  # the order tests' too


def orders_url(shop: dict[str, Any] | str) -> str:
    shop_id = shop if isinstance(shop, str) else shop["id"]
    return f"{V1}/shops/{shop_id}/orders"


def order_url(shop: dict[str, Any] | str, order_id: str) -> str:
    return f"{orders_url(shop)}/{order_id}"


def cancel_url(shop: dict[str, Any] | str, order_id: str) -> str:
    return f"{order_url(shop, order_id)}/cancel"


def product_url(shop: dict[str, Any] | str, product_id: str) -> str:
    shop_id = shop if isinstance(shop, str) else shop["id"]
    return f"{V1}/shops/{shop_id}/products/{product_id}"


def order_scope(shop: dict[str, Any]) -> str:
    """The idempotency scope the orders route uses: method and path."""
    return f"POST {orders_url(shop)}"


def order_fingerprint(shop: dict[str, Any], body: dict[str, Any]) -> str:
    """The fingerprint the app computes for ``body`` (after validation, as JSON)."""
    return fingerprint(order_scope(shop), OrderIn.model_validate(body).model_dump(mode="json"))


def idem(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def assert_validation_error(r: httpx2.Response, *fields: str) -> list[dict[str, Any]]:
    """422 with an ``errors`` array naming every one of ``fields`` somewhere in a ``loc``."""
    body = assert_problem(r, 422, "validation-error")
    errors: list[dict[str, Any]] = body["errors"]
    assert errors, body
    locs = [[str(part) for part in e["loc"]] for e in errors]
    for name in fields:
        assert any(name in loc for loc in locs), (name, locs)
    return errors


def _uuid(value: str | uuid.UUID) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


@dataclass(frozen=True)
class ProductState:
    stock: int
    version: int
    price_cents: int
    name: str
    status: str


async def product_state(resources: Resources, product: dict[str, Any] | str) -> ProductState:
    product_id = product if isinstance(product, str) else product["id"]
    async with resources.sessionmaker() as session:
        row = (
            await session.execute(
                select(
                    Product.stock,
                    Product.version,
                    Product.price_cents,
                    Product.name,
                    Product.status,
                ).where(Product.id == _uuid(product_id))
            )
        ).one()
    return ProductState(row.stock, row.version, row.price_cents, row.name, str(row.status.value))


async def stock_of(resources: Resources, product: dict[str, Any] | str) -> int:
    return (await product_state(resources, product)).stock


async def count_orders(
    resources: Resources, shop: dict[str, Any] | None = None, *, status: str | None = None
) -> int:
    stmt = select(func.count()).select_from(Order)
    if shop is not None:
        stmt = stmt.where(Order.shop_id == _uuid(shop["id"]))
    if status is not None:
        stmt = stmt.where(Order.status == OrderStatus(status))
    async with resources.sessionmaker() as session:
        return int((await session.execute(stmt)).scalar_one())


async def count_order_lines(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        stmt = select(func.count()).select_from(OrderLine)
        return int((await session.execute(stmt)).scalar_one())


async def order_ids_in_db(resources: Resources) -> set[str]:
    async with resources.sessionmaker() as session:
        return {str(i) for i in (await session.execute(select(Order.id))).scalars()}


async def order_status_in_db(resources: Resources, order_id: str) -> str:
    async with resources.sessionmaker() as session:
        status = (
            await session.execute(select(Order.status).where(Order.id == _uuid(order_id)))
        ).scalar_one()
    return str(status.value)


async def set_order_status(resources: Resources, order_id: str, status: str) -> None:
    """Move an order to any status behind the API's back (e.g. paid, fulfilled)."""
    async with resources.sessionmaker() as session:
        result = await session.execute(
            update(Order).where(Order.id == _uuid(order_id)).values(status=OrderStatus(status))
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]
        await session.commit()


async def idempotency_states(resources: Resources) -> list[str]:
    async with resources.sessionmaker() as session:
        return list((await session.execute(select(IdempotencyRecord.state))).scalars())
