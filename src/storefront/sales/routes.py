"""GET /shops/{shop_id}/sales: the sales projection (owners and staff)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from storefront.kit.db import utcnow
from storefront.sales.auth import SalesReader
from storefront.sales.schemas import SalesDayOut, SalesOut
from storefront.sales.service import SalesService
from storefront.web.deps import ReadSessionDep
from storefront.web.responses import PROBLEM_RESPONSES, no_store

router = APIRouter(tags=["sales"])
DEFAULT_DAYS = 30


@router.get(
    "/shops/{shop_id}/sales",
    response_model=SalesOut,
    response_model_by_alias=True,
    responses=PROBLEM_RESPONSES,
    summary="Orders, revenue and refunds per day and currency (owners and staff)",
    description=(
        "Built from the domain events by the sales projection, so it may trail the orders by "
        "the relay's delay. `from` and `to` are inclusive UTC days (default: the last "
        f"{DEFAULT_DAYS} days); at most 366 days per request."
    ),
)
async def shop_sales(
    reader: SalesReader,
    session: ReadSessionDep,
    response: Response,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> SalesOut:
    end = end or utcnow().date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    rows = await SalesService(session).days(reader.shop_id, start, end)
    no_store(response)
    return SalesOut(
        shop_id=reader.shop_id,
        from_=start,
        to=end,
        days=[SalesDayOut.model_validate(row) for row in rows],
    )
