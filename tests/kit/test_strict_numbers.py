"""Numbers in write bodies are strict JSON integers: ``true``, ``"12"`` and ``12.0`` are
422 problems for quantities, prices and stock (pydantic's lax mode read them as 1 and 12),
and nothing is written. Query parameters still parse from text (``?limit=5``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from storefront.catalog.models import Product
from storefront.orders.models import Order
from storefront.resources import Resources
from tests.support.factories import V1, Api, ProductInFactory, shop_with_staff
from tests.support.problems import assert_problem

NOT_INTEGERS = [True, False, "12", 12.0, "1e1", None]


async def _count(resources: Resources, model: Any) -> int:
    async with resources.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize("field", ["price_cents", "stock"])
async def test_a_product_number_must_be_a_json_integer(
    api: Api, resources: Resources, field: str
) -> None:
    _, staff, shop = await shop_with_staff(api)
    url = f"{V1}/shops/{shop['id']}/products"
    for value in NOT_INTEGERS:
        body = ProductInFactory.build().model_dump() | {field: value}
        r = await api.client.post(url, json=body, headers=staff.auth)
        problem = assert_problem(r, 422)
        assert problem["errors"][0]["loc"] == ["body", field], (value, problem)
        r = await api.client.post(f"{url}/bulk", json={"items": [body]}, headers=staff.auth)
        assert_problem(r, 422)
    assert await _count(resources, Product) == 0
    r = await api.client.post(
        url, json=ProductInFactory.build().model_dump() | {field: 12}, headers=staff.auth
    )
    assert r.status_code == 201, r.text
    assert r.json()[field] == 12


@pytest.mark.parametrize("field", ["price_cents", "stock"])
async def test_a_product_patch_number_must_be_a_json_integer(api: Api, field: str) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
    for value in NOT_INTEGERS[:-1]:  # null has its own message (may be omitted, not null)
        r = await api.client.patch(url, json={field: value}, headers=staff.auth)
        assert_problem(r, 422)
    assert (await api.client.get(url)).json() == product
    r = await api.client.patch(url, json={field: 12}, headers=staff.auth)
    assert r.status_code == 200, r.text
    assert r.json()[field] == 12


async def test_an_order_quantity_must_be_a_json_integer(api: Api, resources: Resources) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=100)
    customer = await api.user()
    url = f"{V1}/shops/{shop['id']}/orders"
    for value in NOT_INTEGERS:
        body = api.order_body((product, 1))
        body["lines"][0]["quantity"] = value
        r = await api.client.post(
            url, json=body, headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())}
        )
        problem = assert_problem(r, 422)
        assert problem["errors"][0]["loc"] == ["body", "lines", 0, "quantity"], (value, problem)
    assert await _count(resources, Order) == 0
    body = api.order_body((product, 12))
    r = await api.client.post(
        url, json=body, headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["quantity"] == 12
    stock = (await api.client.get(f"{V1}/shops/{shop['id']}/products/{product['id']}")).json()
    assert stock["stock"] == 88


async def test_query_parameters_still_parse_from_text(api: Api) -> None:
    _, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop)
    r = await api.client.get(f"{V1}/shops/{shop['id']}/products", params={"limit": "2"})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 2
