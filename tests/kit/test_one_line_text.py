"""Names other people read are one line of visible text: no control characters (line breaks,
terminal escape sequences) and no text-direction overrides ("Trojan Source" spoofing).

Found by probing: a display name of ``"\\u202eevil"`` or ``"x\\x1b[31my"`` was stored and shown
to shop staff, in exports and on packing slips as sent.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from storefront.catalog.models import Product
from storefront.orders.models import Order
from storefront.resources import Resources
from storefront.shops.models import Shop
from tests.support.factories import PASSWORD, V1, Api, ProductInFactory, shop_with_staff
from tests.support.problems import assert_problem

HOSTILE = [
    pytest.param("\u202egpj.exe", id="rtl-override"),
    pytest.param("a\u2066b\u2069", id="isolate"),
    pytest.param("x\x1b[31my", id="ansi-escape"),
    pytest.param("two\nlines", id="newline"),
    pytest.param("tab\there", id="tab"),
    pytest.param("c1\x85next", id="c1-next-line"),
]


async def _count(resources: Resources, model: Any) -> int:
    async with resources.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize("value", HOSTILE)
async def test_display_names_are_one_line(api: Api, value: str) -> None:
    r = await api.client.post(
        f"{V1}/auth/register",
        json={"email": "one@example.com", "password": PASSWORD, "display_name": value},
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"][-1] == "display_name"
    user = await api.user()
    r = await api.client.patch(f"{V1}/users/me", json={"display_name": value}, headers=user.auth)
    assert_problem(r, 422)
    me = await api.client.get(f"{V1}/users/me", headers=user.auth)
    assert me.json()["display_name"] == "Test User"


@pytest.mark.parametrize("value", HOSTILE)
async def test_shop_and_product_names_are_one_line(
    api: Api, resources: Resources, value: str
) -> None:
    owner = await api.user()
    r = await api.client.post(
        f"{V1}/shops", json={"name": value, "slug": "one-line-shop"}, headers=owner.auth
    )
    assert_problem(r, 422)
    shops_before = await _count(resources, Shop)
    _, staff, shop = await shop_with_staff(api)
    for field in ("name", "category"):
        product = ProductInFactory.build().model_dump() | {field: value}
        r = await api.client.post(
            f"{V1}/shops/{shop['id']}/products", json=product, headers=staff.auth
        )
        body = assert_problem(r, 422)
        assert body["errors"][0]["loc"][-1] == field
    assert await _count(resources, Product) == 0
    assert await _count(resources, Shop) == shops_before + 1


@pytest.mark.parametrize("field", ["name", "line1", "city"])
async def test_shipping_address_lines_are_one_line(
    api: Api, resources: Resources, field: str
) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=5)
    customer = await api.user()
    body = api.order_body((product, 1))
    body["shipping_address"][field] = "\u202eevil"
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json=body,
        headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(r, 422)
    assert await _count(resources, Order) == 0


async def test_ordinary_names_still_pass(api: Api) -> None:
    """Accents, scripts written right to left, emoji with joiners: all fine."""
    for name in ("José Ñúñez", "مريم", "👩‍👩‍👧 family", "O'Brien-Smith"):
        r = await api.client.post(
            f"{V1}/auth/register",
            json={
                "email": f"{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "display_name": name,
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["display_name"] == name


async def test_descriptions_keep_their_line_breaks(api: Api) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = ProductInFactory.build().model_dump() | {"description": "line one\nline two"}
    r = await api.client.post(f"{V1}/shops/{shop['id']}/products", json=product, headers=staff.auth)
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "line one\nline two"
