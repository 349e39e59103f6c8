"""Products in API v2: HAL documents, money objects, string ids, pages linked with first,
next and prev, the archive action for staff only, and content negotiation (decision 0142)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx2

from tests.support.factories import Api, shop_with_staff
from tests.support.problems import assert_problem

V2 = "/api/v2"
HAL = "application/hal+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def get(api: Api, url: str, **headers: str) -> httpx2.Response:
    return await api.client.get(url, headers=headers)


async def test_a_product_as_hal(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=1999, currency="JPY", stock=4)
    url = f"{V2}/shops/{shop['id']}/products/{product['id']}"

    r = await get(api, url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == HAL
    assert "Accept" in r.headers["vary"]
    doc: dict[str, Any] = r.json()
    assert doc["id"] == product["id"]
    assert isinstance(doc["id"], str)
    assert doc["price"] == {"amount": "1999", "currency": "JPY"}  # no minor unit
    assert RFC3339_UTC.match(doc["created_at"]), doc["created_at"]
    assert doc["_links"]["self"]["href"] == url
    assert doc["_links"]["collection"]["href"] == f"{V2}/shops/{shop['id']}/products"
    assert doc["_links"]["sf:shop"]["href"] == f"{V2}/shops/{shop['id']}"
    assert doc["_links"]["curies"][0]["href"] == "https://storefront.dev/rels/{rel}"
    assert "sf:archive" not in doc["_links"]  # anonymous

    customer = await api.user()
    r = await get(api, url, **customer.auth)
    assert "sf:archive" not in r.json()["_links"]

    r = await get(api, url, **staff.auth)
    archive = r.json()["_links"]["sf:archive"]["href"]
    assert r.headers["cache-control"] == "no-store"  # the staff's links are theirs
    r = await api.client.delete(archive, headers=staff.auth)
    assert r.status_code == 204, r.text
    assert_problem(await get(api, url), 404)


async def test_json_is_the_same_document_and_anything_else_is_406(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    url = f"{V2}/shops/{shop['id']}"
    hal = await get(api, url, Accept=HAL)
    plain = await get(api, url, Accept="application/json")
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == hal.json()
    assert (await get(api, url, Accept="application/*;q=0.5, text/plain")).headers[
        "content-type"
    ] == HAL
    r = await get(api, url, Accept="text/html")
    body = assert_problem(r, 406, "not-acceptable")
    assert body["available"] == [HAL, "application/json", "application/msgpack"]
    # a v1 resource is unchanged: plain JSON, no links
    v1 = await get(api, f"/api/v1/shops/{shop['id']}")
    assert "_links" not in v1.json()


async def test_pages_link_first_next_and_prev(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    made = [await api.product(staff, shop) for _ in range(5)]
    first_url = f"{V2}/shops/{shop['id']}/products?limit=2"

    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    url: str | None = first_url
    while url is not None:
        r = await get(api, url)
        assert r.status_code == 200, r.text
        doc = r.json()
        pages.append(doc)
        assert doc["_links"]["first"]["href"] == first_url
        assert doc["_links"]["self"]["href"] == url
        seen += [p["id"] for p in doc["_embedded"]["products"]]
        assert doc["count"] == len(doc["_embedded"]["products"])
        url = doc["_links"].get("next", {}).get("href")
    assert sorted(seen) == sorted(p["id"] for p in made)
    assert len(pages) == 3
    assert "prev" not in pages[0]["_links"]
    # each later page links back to the one before it
    for before, after in itertools.pairwise(pages):
        back = (await get(api, after["_links"]["prev"]["href"])).json()
        assert back["_embedded"]["products"] == before["_embedded"]["products"]
