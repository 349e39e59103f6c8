"""The shop key (docs/scaling.md, step 2; decision 0202): every shop-owned row is identified
by ``(shop_id, id)``, and order lines and payments reference their order by ``(shop_id,
order_id)``, so a row can never point at another shop's order (what partitions by shop, and
a distributed engine's co-located shards, rely on)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapper

from storefront.catalog.models import Product
from storefront.kit.db import new_id
from storefront.orders.models import Order, OrderLine
from storefront.payments.models import Payment
from storefront.resources import Resources
from storefront.webhooks.models import WebhookEndpoint
from tests.support.factories import Api, shop_with_staff

SHOP_KEYED = (Order, OrderLine, Payment, Product, WebhookEndpoint)


@pytest.mark.parametrize("model", SHOP_KEYED, ids=lambda m: m.__tablename__)
def test_the_identity_of_a_shop_owned_row_is_its_shop_and_id(model: type) -> None:
    mapper: Mapper[Any] = inspect(model)
    assert [column.name for column in mapper.primary_key] == ["shop_id", "id"]


async def test_a_line_or_payment_cannot_name_another_shops_order(
    api: Api, resources: Resources
) -> None:
    _, staff, shop = await shop_with_staff(api)
    _, _, other_shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=500, stock=5, currency="EUR")
    customer = await api.user()
    order = await api.order(customer, shop, (product, 1))
    order_id, shop_id = uuid.UUID(order["id"]), uuid.UUID(shop["id"])
    wrong_shop = uuid.UUID(other_shop["id"])

    async with resources.sessionmaker() as session:
        # the order by its key, and its lines loaded on (shop_id, order_id)
        placed = await session.get(Order, (shop_id, order_id))
        assert placed is not None
        lines = (
            await session.scalars(
                select(OrderLine).where(
                    OrderLine.shop_id == shop_id, OrderLine.order_id == order_id
                )
            )
        ).all()
        assert [line.quantity for line in lines] == [1]
        assert await session.get(Order, (wrong_shop, order_id)) is None

    line = OrderLine(
        id=new_id(),
        order_id=order_id,
        shop_id=wrong_shop,
        position=9,
        product_id=uuid.UUID(product["id"]),
        sku="X-1",
        name="x",
        unit_price_cents=1,
        quantity=1,
        line_total_cents=1,
    )
    payment = Payment(
        id=new_id(),
        shop_id=wrong_shop,
        order_id=order_id,
        amount_cents=500,
        currency="EUR",
        payment_method="pm_card_visa",
    )
    for row in (line, payment):
        async with resources.sessionmaker() as session:
            session.add(row)
            with pytest.raises(IntegrityError):
                await session.commit()
    async with resources.sessionmaker() as session:
        # nothing was written under the other shop
        for model in (OrderLine, Payment):
            found = await session.scalars(select(model).where(model.shop_id == wrong_shop))
            assert found.all() == []
