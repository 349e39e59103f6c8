"""A shop's sales in API v2 (HAL, decisions 0142 and 0206): v1's projection and dependency
(owners and staff; anyone else 404), with money objects."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from storefront.kit.db import utcnow
from storefront.kit.money import money
from storefront.sales.auth import SalesReader
from storefront.sales.routes import DEFAULT_DAYS
from storefront.sales.service import SalesService
from storefront.web.deps import ReadSessionDep
from storefront.web.hal import (
    CURIES,
    SHOP,
    Accepted,
    HalOut,
    HALResponse,
    MoneyOut,
    hal_response,
    ident,
    link,
    problems,
    resource,
    v2,
)
from storefront.web.responses import NO_STORE

router = APIRouter(tags=["sales (v2)"])
SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


class SalesDayV2(BaseModel):
    day: str
    currency: str
    orders_placed: int
    placed: MoneyOut
    orders_paid: int
    revenue: MoneyOut
    refunds: int
    refunded: MoneyOut
    orders_cancelled: int
    orders_expired: int


class SalesV2(HalOut):
    shop_id: str
    from_: str = Field(alias="from")
    to: str
    days: list[SalesDayV2]


def _eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


@router.get(
    "/shops/{shop_id}/sales",
    response_model=SalesV2,
    response_class=HALResponse,
    responses=problems(
        401,
        404,
        example={
            "_links": {
                "self": {"href": f"/api/v2/shops/{SHOP_ID}/sales?from=2026-12-01&to=2026-12-07"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "curies": CURIES,
            },
            "shop_id": SHOP_ID,
            "from": "2026-12-01",
            "to": "2026-12-07",
            "days": [
                {
                    "day": "2026-12-07",
                    "currency": "EUR",
                    "orders_placed": 3,
                    "placed": _eur("112.50"),
                    "orders_paid": 2,
                    "revenue": _eur("75.00"),
                    "refunds": 1,
                    "refunded": _eur("37.50"),
                    "orders_cancelled": 1,
                    "orders_expired": 0,
                }
            ],
        },
    ),
    summary="Orders, revenue and refunds per day and currency (owners and staff; `sf:sales`)",
    description=(
        "Built from the domain events by the sales projection, so it may trail the orders by "
        "the relay's delay. `from` and `to` are inclusive UTC days (default: the last "
        f"{DEFAULT_DAYS} days); at most 366 days per request. Anyone but the shop's owners "
        "and staff gets 404."
    ),
)
async def shop_sales(
    reader: SalesReader,
    session: ReadSessionDep,
    media_type: Accepted,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> HALResponse:
    end = end or utcnow().date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    rows = await SalesService(session).days(reader.shop_id, start, end)
    shop = f"/shops/{reader.shop_id}"
    body = resource(
        {
            "self": link(v2(f"{shop}/sales?from={start.isoformat()}&to={end.isoformat()}")),
            SHOP: link(v2(shop)),
        },
        {
            "shop_id": ident(reader.shop_id),
            "from": start.isoformat(),
            "to": end.isoformat(),
            "days": [
                {
                    "day": row.day.isoformat(),
                    "currency": row.currency,
                    "orders_placed": row.orders_placed,
                    "placed": money(row.placed_cents, row.currency),
                    "orders_paid": row.orders_paid,
                    "revenue": money(row.revenue_cents, row.currency),
                    "refunds": row.refunds,
                    "refunded": money(row.refunded_cents, row.currency),
                    "orders_cancelled": row.orders_cancelled,
                    "orders_expired": row.orders_expired,
                }
                for row in rows
            ],
        },
    )
    return hal_response(body, media_type, headers={"Cache-Control": NO_STORE})
