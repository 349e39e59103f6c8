"""Text the database cannot store (NUL; lone UTF-16 surrogates) is a 422 problem at the edge,
on every string a request carries: JSON fields and keys, query parameters, form fields.
Before the shared ``Text`` type, PostgreSQL answered 500 (and SQLite stored it)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from storefront.catalog.models import Product
from storefront.orders.models import Order
from storefront.resources import Resources
from storefront.shops.models import Shop
from tests.support.factories import V1, Api, ProductInFactory, shop_with_staff
from tests.support.problems import assert_problem

NUL = "a\x00b"


async def _count(resources: Resources, model: Any) -> int:
    async with resources.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def _product(**overrides: Any) -> dict[str, Any]:
    return ProductInFactory.build().model_dump() | overrides


@pytest.mark.parametrize("field", ["name", "category", "description", "sku"])
async def test_nul_in_a_product_field_is_422_and_nothing_is_written(
    api: Api, resources: Resources, field: str
) -> None:
    _, staff, shop = await shop_with_staff(api)
    url = f"{V1}/shops/{shop['id']}/products"
    r = await api.client.post(url, json=_product(**{field: NUL}), headers=staff.auth)
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"][-1] == field
    r = await api.client.post(
        f"{url}/bulk", json={"items": [_product(**{field: NUL})]}, headers=staff.auth
    )
    assert_problem(r, 422)
    assert await _count(resources, Product) == 0


async def test_nul_in_a_product_patch_is_422_and_changes_nothing(api: Api) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
    for field in ("name", "category", "description"):
        r = await api.client.patch(url, json={field: NUL}, headers=staff.auth)
        assert_problem(r, 422)
    r = await api.client.get(url)
    assert r.json() == product


async def test_nul_in_a_shop_name_is_422_and_nothing_is_written(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    r = await api.client.post(
        f"{V1}/shops", json={"name": NUL, "slug": "nul-shop"}, headers=owner.auth
    )
    assert_problem(r, 422)
    assert await _count(resources, Shop) == 0


@pytest.mark.parametrize("param", ["q", "category", "cursor"])
async def test_nul_in_a_listing_query_parameter_is_422(api: Api, param: str) -> None:
    _, staff, shop = await shop_with_staff(api)
    await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/products"
    r = await api.client.get(url, params={param: NUL})
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == ["query", param]


async def test_nul_in_registration_and_sign_in_is_422(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/auth/register",
        json={"email": "nul\x00@example.com", "password": "x" * 16, "display_name": "N"},
    )
    assert_problem(r, 422)
    r = await api.client.post(
        f"{V1}/auth/register",
        json={"email": "nul@example.com", "password": "x" * 16, "display_name": NUL},
    )
    assert_problem(r, 422)
    r = await api.client.post(
        f"{V1}/auth/login", json={"email": "nul\x00@example.com", "password": "whatever-pass"}
    )
    assert_problem(r, 422)
    r = await api.client.post(
        f"{V1}/auth/token", data={"username": "nul\x00@example.com", "password": "whatever"}
    )
    assert_problem(r, 422)
    user = await api.user()
    r = await api.client.patch(f"{V1}/users/me", json={"display_name": NUL}, headers=user.auth)
    assert_problem(r, 422)


async def test_nul_in_a_shipping_address_is_422_and_no_order_is_placed(
    api: Api, resources: Resources
) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=5)
    customer = await api.user()
    body = api.order_body((product, 1))
    body["shipping_address"]["line1"] = NUL
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json=body,
        headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(r, 422)
    assert await _count(resources, Order) == 0
    r = await api.client.get(f"{V1}/shops/{shop['id']}/products/{product['id']}")
    assert r.json()["stock"] == 5


async def test_nul_in_a_webhook_url_is_422(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/webhooks",
        json={"url": "https://hooks.example.com/a\x00b", "events": ["order.placed"]},
        headers=owner.auth,
    )
    assert_problem(r, 422)


@pytest.mark.parametrize(
    "raw",
    [
        # a lone surrogate: valid JSON text, not storable Unicode (no UTF-8 form)
        b'{"name": "\\ud800", "slug": "surrogate-shop"}',
        # ... and in a key: an unknown member, whose name the 422 would echo in its loc
        b'{"name": "Shop", "slug": "surrogate-shop", "\\udfff": 1}',
        b'{"name": "Shop", "slug": "surrogate-shop", "a\\u0000": 1}',
    ],
)
async def test_unstorable_text_in_json_strings_and_keys_is_a_problem(
    api: Api, resources: Resources, raw: bytes
) -> None:
    owner = await api.user()
    r = await api.client.post(
        f"{V1}/shops",
        content=raw,
        headers={**owner.auth, "Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422), r.text
    assert_problem(r, r.status_code)
    assert await _count(resources, Shop) == 0


async def test_nul_in_an_idempotency_key_is_422(api: Api) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    customer = await api.user()
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json=api.order_body((product, 1)),
        headers={**customer.auth, "Idempotency-Key": "key\x00one"},
    )
    assert_problem(r, 422)


@pytest.mark.parametrize("seq", [2**63, 10**30])
async def test_a_cursor_number_the_database_cannot_hold_is_422(api: Api, seq: int) -> None:
    # the audit log's cursor carries a sequence number; past BIGINT it reached the driver
    import base64

    owner = await api.user()
    shop = await api.shop(owner)
    forged = base64.urlsafe_b64encode(b'{"seq":%d}' % seq).decode().rstrip("=")
    r = await api.client.get(
        f"{V1}/shops/{shop['id']}/audit-events", params={"cursor": forged}, headers=owner.auth
    )
    assert_problem(r, 422, slug="invalid-cursor")
