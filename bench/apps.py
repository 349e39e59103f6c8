"""The comparison servers of `make bench` (served by uvicorn, one worker each, like Storefront):

- ``bare``: a bare FastAPI endpoint returning a small JSON — the framework's ceiling;
- ``pk``: a bare endpoint doing one primary-key SELECT through an asyncpg pool — the
  database ceiling (same table and row as Storefront's product GET);
- ``naive``: Storefront itself plus the order listing written the way first versions usually
  are — offset pagination, one query per order for its lines, no cache. It exists only here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, FastAPI, Query
from sqlalchemy import select

from storefront.app import create_app
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.errors import Forbidden
from storefront.orders.models import Order, OrderLine
from storefront.shops.service import ShopService
from storefront.web.deps import SessionDep


def bare() -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def small_json() -> dict[str, Any]:
        return {"status": "ok", "service": "bare", "n": 1}

    return app


def pk() -> FastAPI:
    dsn = os.environ["BENCH_ASYNCPG_DSN"]
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=15)
        yield
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/products/{product_id}")
    async def product(product_id: uuid.UUID) -> dict[str, Any]:
        row = await state["pool"].fetchrow(
            "SELECT id, shop_id, sku, name, description, price_cents, currency, stock, category,"
            " status, version, created_at, updated_at FROM products WHERE id = $1",
            product_id,
        )
        return dict(row) if row else {}

    return app


naive_router = APIRouter()


@naive_router.get("/naive/shops/{shop_id}/orders")
async def naive_orders(
    shop_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    page: Annotated[int, Query(ge=0)] = 0,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    if not await ShopService(session).is_staff(shop_id, principal):
        raise Forbidden("staff only")
    orders = (
        (
            await session.execute(
                select(Order)
                .where(Order.shop_id == shop_id)
                .order_by(Order.created_at.desc())
                .offset(page * size)
                .limit(size)
            )
        )
        .scalars()
        .all()
    )
    items = []
    for order in orders:  # one query per order: the N+1 of a first version
        lines = (
            (await session.execute(select(OrderLine).where(OrderLine.order_id == order.id)))
            .scalars()
            .all()
        )
        items.append(
            {
                "id": str(order.id),
                "shop_id": str(order.shop_id),
                "customer_id": str(order.customer_id),
                "status": order.status.value,
                "currency": order.currency,
                "total_cents": order.total_cents,
                "created_at": order.created_at.isoformat(),
                "lines": [
                    {
                        "product_id": str(line.product_id),
                        "sku": line.sku,
                        "name": line.name,
                        "unit_price_cents": line.unit_price_cents,
                        "quantity": line.quantity,
                        "line_total_cents": line.line_total_cents,
                    }
                    for line in lines
                ],
            }
        )
    return {"items": items, "page": page}


def naive() -> FastAPI:
    app = create_app()
    app.include_router(naive_router)
    return app
