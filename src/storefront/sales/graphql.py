"""The sales projection in the GraphQL schema: ``sales(shopId, from, to)``, what GET
/shops/{id}/sales answers, for the same readers (owners and staff; anyone else: not-found)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

import strawberry

from storefront.kit.db import utcnow
from storefront.sales.models import SalesDay as SalesDayRow
from storefront.sales.routes import DEFAULT_DAYS
from storefront.sales.service import SalesService
from storefront.web.graphql import GraphQLContext, MoneyValue


@strawberry.type(description="One day's activity of a shop in one currency.")
class SalesDay:
    day: date = strawberry.field(description="The UTC day.")
    currency: str = strawberry.field(description="The currency of the amounts (ISO 4217).")
    orders_placed: int = strawberry.field(description="Orders placed that day.")
    placed: MoneyValue = strawberry.field(description="Their totals.")
    orders_paid: int = strawberry.field(description="Payments confirmed that day.")
    revenue: MoneyValue = strawberry.field(description="Amounts paid that day.")
    refunds: int = strawberry.field(description="Refunds made that day.")
    refunded: MoneyValue = strawberry.field(description="Amounts refunded that day.")
    orders_cancelled: int = strawberry.field(description="Orders cancelled that day.")
    orders_expired: int = strawberry.field(description="Orders expired unpaid that day.")

    @classmethod
    def of(cls, row: SalesDayRow) -> SalesDay:
        return cls(
            day=row.day,
            currency=row.currency,
            orders_placed=row.orders_placed,
            placed=MoneyValue(row.placed_cents, row.currency),
            orders_paid=row.orders_paid,
            revenue=MoneyValue(row.revenue_cents, row.currency),
            refunds=row.refunds,
            refunded=MoneyValue(row.refunded_cents, row.currency),
            orders_cancelled=row.orders_cancelled,
            orders_expired=row.orders_expired,
        )


@strawberry.type(description="A shop's sales over a range of days (the sales projection).")
class Sales:
    shop_id: strawberry.ID = strawberry.field(description="The shop.")
    start: date = strawberry.field(name="from", description="The first day (inclusive).")
    end: date = strawberry.field(name="to", description="The last day (inclusive).")
    days: list[SalesDay] = strawberry.field(
        description="One entry per day and currency with activity, oldest first."
    )


@strawberry.type
class SalesQuery:
    @strawberry.field(
        description="Orders, revenue and refunds per day and currency, as GET "
        "/shops/{id}/sales (owners and staff; anyone else: not-found). Built from the domain "
        "events, so it may trail the orders by the relay's delay."
    )
    async def sales(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        start: Annotated[
            date | None,
            strawberry.argument(name="from", description="Default: 29 days before `to`."),
        ] = None,
        end: Annotated[
            date | None, strawberry.argument(name="to", description="Default: today (UTC).")
        ] = None,
    ) -> Sales:
        context = info.context
        principal = context.require_principal()
        end = end or utcnow().date()
        start = start or end - timedelta(days=DEFAULT_DAYS - 1)
        async with context.reading() as session:
            sales = SalesService(session)
            await sales.require_reader(shop_id, principal)
            rows = await sales.days(shop_id, start, end)
            return Sales(
                shop_id=strawberry.ID(str(shop_id)),
                start=start,
                end=end,
                days=[SalesDay.of(row) for row in rows],
            )
