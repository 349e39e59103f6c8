"""Catalog endpoints (/api/v1/shops/{shop_id}/products...) against the real app and database.

Every test runs on SQLite and on PostgreSQL (the ``backend`` fixture behind ``api``).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import orjson
import pytest

from tests.conftest import QueryCounter
from tests.support.factories import V1, Api, ProductInFactory, UserHandle, shop_with_staff, unique
from tests.support.problems import assert_problem

STRONG_ETAG = re.compile(r'^"[^"]+"$')
LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
PRODUCT_FIELDS = {
    "id",
    "shop_id",
    "sku",
    "name",
    "description",
    "price_cents",
    "currency",
    "stock",
    "category",
    "status",
    "version",
    "created_at",
    "updated_at",
}


# --------------------------------------------------------------------------- helpers


def products_url(shop: dict[str, Any] | str) -> str:
    shop_id = shop if isinstance(shop, str) else shop["id"]
    return f"{V1}/shops/{shop_id}/products"


def product_url(shop: dict[str, Any] | str, product: dict[str, Any] | str) -> str:
    product_id = product if isinstance(product, str) else product["id"]
    return f"{products_url(shop)}/{product_id}"


def payload(**overrides: Any) -> dict[str, Any]:
    return ProductInFactory.build(**overrides).model_dump()


def assert_validation_problem(r: httpx2.Response, *field_names: str) -> dict[str, Any]:
    """A 422 with an ``errors`` array naming every field in ``field_names``."""
    body = assert_problem(r, 422, "validation-error")
    assert isinstance(body["errors"], list)
    assert body["errors"], body
    for err in body["errors"]:
        assert {"loc", "msg", "type"} <= err.keys()
    named = {str(part) for err in body["errors"] for part in err["loc"]}
    for name in field_names:
        assert name in named, (name, body["errors"])
    return body


async def get_product(api: Api, shop: dict[str, Any], product: dict[str, Any]) -> httpx2.Response:
    return await api.client.get(product_url(shop, product))


async def list_all(api: Api, shop: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Every listed product, following next_cursor until it is null."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {"limit": 100, **params}
        if cursor is not None:
            query["cursor"] = cursor
        r = await api.client.get(products_url(shop), params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


async def bulk(
    api: Api, user: UserHandle | None, shop: dict[str, Any], items: list[dict[str, Any]]
) -> httpx2.Response:
    headers = user.auth if user is not None else {}
    return await api.client.post(
        f"{products_url(shop)}/bulk", json={"items": items}, headers=headers
    )


async def outsider(api: Api) -> UserHandle:
    """A signed-in user who is not a member of any shop."""
    return await api.user()


def make_cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


# --------------------------------------------------------------------------- POST /products


async def test_create_product_returns_201_with_etag_location_and_body(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    body = payload(
        sku="MUG-001",
        name="Blue Mug",
        description="Holds coffee.",
        price_cents=1299,
        currency="EUR",
        stock=7,
        category="kitchen",
    )
    r = await api.client.post(products_url(shop), json=body, headers=staff.auth)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    created = r.json()
    assert set(created) == PRODUCT_FIELDS
    uuid.UUID(created["id"])
    assert created["shop_id"] == shop["id"]
    assert created["sku"] == "MUG-001"
    assert created["name"] == "Blue Mug"
    assert created["description"] == "Holds coffee."
    assert created["price_cents"] == 1299
    assert created["currency"] == "EUR"
    assert created["stock"] == 7
    assert created["category"] == "kitchen"
    assert created["status"] == "active"
    assert created["version"] == 1
    assert created["created_at"]
    assert created["updated_at"]

    assert r.headers["Location"] == f"{V1}/shops/{shop['id']}/products/{created['id']}"
    tag = r.headers["ETag"]
    assert STRONG_ETAG.match(tag), tag

    # the Location resolves to the same representation, with the same ETag
    g = await api.client.get(r.headers["Location"])
    assert g.status_code == 200, g.text
    assert g.json() == created
    assert g.headers["ETag"] == tag


async def test_create_product_owner_is_staff_too(api: Api) -> None:
    owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.post(products_url(shop), json=payload(), headers=owner.auth)
    assert r.status_code == 201, r.text


async def test_create_product_description_defaults_and_name_is_stripped(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    body = payload(name="Plain")
    del body["description"]
    body["name"] = "   Plain   "
    r = await api.client.post(products_url(shop), json=body, headers=staff.auth)
    assert r.status_code == 201, r.text
    assert r.json()["description"] == ""
    assert r.json()["name"] == "Plain"


async def test_create_duplicate_sku_in_same_shop_is_409(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    first = await api.product(staff, shop, sku="DUP-1", name="First")
    r = await api.client.post(
        products_url(shop), json=payload(sku="DUP-1", name="Second"), headers=staff.auth
    )
    assert_problem(r, 409, "conflict")
    items = await list_all(api, shop)
    assert [p["id"] for p in items] == [first["id"]]
    assert items[0]["name"] == "First"


async def test_same_sku_in_another_shop_is_fine(api: Api) -> None:
    _o1, staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    a = await api.product(staff1, shop1, sku="SHARED-SKU")
    b = await api.product(staff2, shop2, sku="SHARED-SKU")
    assert a["id"] != b["id"]
    assert a["shop_id"] == shop1["id"]
    assert b["shop_id"] == shop2["id"]


async def test_create_by_non_staff_is_403(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    stranger = await outsider(api)
    r = await api.client.post(products_url(shop), json=payload(), headers=stranger.auth)
    assert_problem(r, 403, "forbidden")
    assert await list_all(api, shop) == []


async def test_create_by_staff_of_another_shop_is_403(api: Api) -> None:
    _o1, _s1, shop1 = await shop_with_staff(api)
    _o2, staff2, _shop2 = await shop_with_staff(api)
    r = await api.client.post(products_url(shop1), json=payload(), headers=staff2.auth)
    assert_problem(r, 403, "forbidden")
    assert await list_all(api, shop1) == []


async def test_create_anonymous_is_401(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.post(products_url(shop), json=payload())
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await list_all(api, shop) == []


async def test_create_with_invalid_token_is_401(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.post(
        products_url(shop), json=payload(), headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert_problem(r, 401, "unauthenticated")


async def test_create_in_unknown_shop_is_404(api: Api) -> None:
    _owner, staff, _shop = await shop_with_staff(api)
    r = await api.client.post(products_url(str(uuid.uuid4())), json=payload(), headers=staff.auth)
    assert_problem(r, 404, "not-found")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "00000000-0000-0000-0000-000000000001"),
        ("version", 5),
        ("status", "archived"),
        ("shop_id", "00000000-0000-0000-0000-000000000001"),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("colour", "blue"),
    ],
)
async def test_create_with_read_only_or_unknown_field_is_422(
    api: Api, field: str, value: Any
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await api.client.post(
        products_url(shop), json={**payload(), field: value}, headers=staff.auth
    )
    body = assert_validation_problem(r, field)
    assert any(e["type"] == "extra_forbidden" for e in body["errors"])
    assert await list_all(api, shop) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_cents", -1),
        ("price_cents", "ten"),
        ("price_cents", 100_000_000_001),
        ("stock", -1),
        ("currency", "eur"),
        ("currency", "EU"),
        ("currency", "EURO"),
        ("currency", "E1R"),
        ("sku", "S" * 65),
        ("sku", ""),
        ("sku", "has space"),
        ("sku", "-leading-dash"),
        ("name", "N" * 201),
        ("name", "   "),
        ("description", "D" * 5001),
        ("category", "C" * 65),
        ("category", ""),
    ],
)
async def test_create_with_invalid_value_is_422(api: Api, field: str, value: Any) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await api.client.post(
        products_url(shop), json={**payload(), field: value}, headers=staff.auth
    )
    assert_validation_problem(r, field)
    assert await list_all(api, shop) == []


@pytest.mark.parametrize("field", ["sku", "name", "price_cents", "currency", "stock", "category"])
async def test_create_missing_required_field_is_422(api: Api, field: str) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    body = payload()
    del body[field]
    r = await api.client.post(products_url(shop), json=body, headers=staff.auth)
    assert_validation_problem(r, field)


async def test_create_accepts_maximum_lengths(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    body = payload(
        sku="S" * 64, name="N" * 200, description="D" * 5000, category="C" * 64, price_cents=0
    )
    r = await api.client.post(products_url(shop), json=body, headers=staff.auth)
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["sku"], got["name"], got["description"], got["category"]) == (
        "S" * 64,
        "N" * 200,
        "D" * 5000,
        "C" * 64,
    )
    assert got["price_cents"] == 0


# --------------------------------------------------------------------------- GET list


async def test_list_keyset_pagination_visits_every_product_once_in_id_order(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    ids = [(await api.product(staff, shop))["id"] for _ in range(25)]

    seen: list[str] = []
    cursor: str | None = None
    page_sizes: list[int] = []
    for _ in range(10):
        params: dict[str, Any] = {"limit": 10}
        if cursor is not None:
            params["cursor"] = cursor
        r = await api.client.get(products_url(shop), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        page_sizes.append(len(body["items"]))
        seen.extend(p["id"] for p in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            assert "Link" not in r.headers
            break
        match = LINK_NEXT.match(r.headers["Link"])
        assert match, r.headers["Link"]
        link_query = parse_qs(urlsplit(match["url"]).query)
        assert link_query["cursor"] == [cursor]
        assert link_query["limit"] == ["10"]
    else:
        raise AssertionError("pagination never ended")

    assert page_sizes == [10, 10, 5]
    assert len(seen) == len(set(seen)) == 25
    assert seen == sorted(ids, key=uuid.UUID)
    assert set(seen) == set(ids)


async def test_list_link_header_is_followable(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop, category="books")
    await api.product(staff, shop, category="coffee")

    r = await api.client.get(products_url(shop), params={"limit": 2, "category": "books"})
    assert r.status_code == 200, r.text
    first = r.json()
    match = LINK_NEXT.match(r.headers["Link"])
    assert match, r.headers["Link"]
    url = match["url"]
    assert parse_qs(urlsplit(url).query)["category"] == ["books"]

    r2 = await api.client.get(url)
    assert r2.status_code == 200, r2.text
    second = r2.json()
    assert len(first["items"]) == 2
    assert len(second["items"]) == 1
    assert second["items"][0]["category"] == "books"
    assert second["next_cursor"] is None
    assert "Link" not in r2.headers
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second["items"]}


async def test_list_exactly_full_page_has_no_next(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop)
    r = await api.client.get(products_url(shop), params={"limit": 3})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 3
    assert r.json()["next_cursor"] is None
    assert "Link" not in r.headers


async def test_list_default_limit_is_20(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await bulk(api, staff, shop, [payload() for _ in range(21)])
    assert r.status_code == 200, r.text
    r = await api.client.get(products_url(shop))
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 20
    assert r.json()["next_cursor"] is not None
    assert 'rel="next"' in r.headers["Link"]


async def test_list_empty_shop(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(products_url(shop))
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}
    assert "Link" not in r.headers


async def test_list_max_limit_100_is_allowed(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(products_url(shop), params={"limit": 100})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("limit", ["101", "0", "-1", "ten"])
async def test_list_bad_limit_is_422(api: Api, limit: str) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(products_url(shop), params={"limit": limit})
    assert_validation_problem(r, "limit")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-a-cursor!!!",
        "abc",
        make_cursor({"nope": 1}),
        make_cursor({"id": "not-hex"}),
        make_cursor({"id": 5}),
        make_cursor({"id": None}),
        make_cursor([1, 2]),
        make_cursor("just a string"),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ],
)
async def test_list_malformed_cursor_is_422_problem(api: Api, cursor: str) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    await api.product(staff, shop)
    r = await api.client.get(products_url(shop), params={"cursor": cursor})
    assert_problem(r, 422, "invalid-cursor")


async def test_list_overlong_cursor_is_422(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(products_url(shop), params={"cursor": "A" * 257})
    assert_validation_problem(r, "cursor")


async def test_list_category_filter(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    books = {(await api.product(staff, shop, category="books"))["id"] for _ in range(3)}
    for _ in range(2):
        await api.product(staff, shop, category="coffee")

    got = await list_all(api, shop, category="books")
    assert {p["id"] for p in got} == books
    assert all(p["category"] == "books" for p in got)
    assert await list_all(api, shop, category="nothing-here") == []

    # paging inside a category keeps the filter
    r = await api.client.get(products_url(shop), params={"category": "books", "limit": 2})
    assert r.status_code == 200, r.text
    page1 = r.json()
    r = await api.client.get(
        products_url(shop),
        params={"category": "books", "limit": 2, "cursor": page1["next_cursor"]},
    )
    page2 = r.json()
    assert {p["id"] for p in page1["items"] + page2["items"]} == books
    assert page2["next_cursor"] is None


async def test_list_q_is_case_insensitive_substring_on_name(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    wanted = {
        (await api.product(staff, shop, name=name))["id"]
        for name in ("Blue Mug", "dark blue bowl", "BLUEBERRY jam")
    }
    await api.product(staff, shop, name="Red Mug")
    await api.product(staff, shop, name="Green cup", description="not blue at all")
    await api.product(staff, shop, name="Plain", sku="BLUE-SKU")

    got = await list_all(api, shop, q="bLuE")
    assert {p["id"] for p in got} == wanted
    mugs = {p["name"] for p in await list_all(api, shop, q="MUG")}
    assert mugs == {"Blue Mug", "Red Mug"}
    assert await list_all(api, shop, q="purple") == []


async def test_list_q_and_category_combine(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    hit = await api.product(staff, shop, name="Blue Book", category="books")
    await api.product(staff, shop, name="Blue Bean", category="coffee")
    await api.product(staff, shop, name="Red Book", category="books")
    got = await list_all(api, shop, q="blue", category="books")
    assert [p["id"] for p in got] == [hit["id"]]


async def test_list_q_treats_percent_underscore_and_backslash_literally(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    pct = await api.product(staff, shop, name="100% Cotton")
    await api.product(staff, shop, name="100 Cotton")
    await api.product(staff, shop, name="1000 Cottons")
    under = await api.product(staff, shop, name="snake_case")
    await api.product(staff, shop, name="snakeXcase")
    slash = await api.product(staff, shop, name="back\\slash")
    await api.product(staff, shop, name="backslash")

    assert [p["id"] for p in await list_all(api, shop, q="100%")] == [pct["id"]]
    assert [p["id"] for p in await list_all(api, shop, q="%")] == [pct["id"]]
    assert [p["id"] for p in await list_all(api, shop, q="e_c")] == [under["id"]]
    assert [p["id"] for p in await list_all(api, shop, q="_")] == [under["id"]]
    assert [p["id"] for p in await list_all(api, shop, q="k\\s")] == [slash["id"]]


@pytest.mark.parametrize(("param", "value"), [("q", ""), ("q", "x" * 101), ("category", "")])
async def test_list_bad_filter_is_422(api: Api, param: str, value: str) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(products_url(shop), params={param: value})
    assert_validation_problem(r, param)


async def test_list_excludes_archived_products(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    keep = await api.product(staff, shop, name="Keep me", category="books")
    drop = await api.product(staff, shop, name="Drop me", category="books")
    r = await api.client.delete(product_url(shop, drop), headers=staff.auth)
    assert r.status_code == 204, r.text
    assert [p["id"] for p in await list_all(api, shop)] == [keep["id"]]
    assert await list_all(api, shop, q="drop") == []
    assert [p["id"] for p in await list_all(api, shop, category="books")] == [keep["id"]]


async def test_list_only_shows_this_shops_products(api: Api) -> None:
    _o1, staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    mine = await api.product(staff1, shop1)
    await api.product(staff2, shop2)
    assert [p["id"] for p in await list_all(api, shop1)] == [mine["id"]]


async def test_list_unknown_shop_is_404(api: Api) -> None:
    r = await api.client.get(products_url(str(uuid.uuid4())))
    assert_problem(r, 404, "not-found")


async def test_list_bad_shop_id_is_422(api: Api) -> None:
    r = await api.client.get(products_url("not-a-uuid"))
    assert_validation_problem(r, "shop_id")


# --------------------------------------------------------------------------- GET one


async def test_get_product_200_with_strong_etag(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await get_product(api, shop, product)
    assert r.status_code == 200, r.text
    assert r.json() == product
    tag = r.headers["ETag"]
    assert STRONG_ETAG.match(tag), tag
    assert not tag.startswith("W/")
    assert r.headers["Cache-Control"] == "no-cache"
    # stable: the same representation gives the same tag
    again = await get_product(api, shop, product)
    assert again.headers["ETag"] == tag


async def test_get_product_anonymous_and_outsider_can_read(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    stranger = await outsider(api)
    r = await api.client.get(product_url(shop, product), headers=stranger.auth)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == product["id"]


async def test_get_product_if_none_match_gives_304(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    tag = (await get_product(api, shop, product)).headers["ETag"]

    r = await api.client.get(product_url(shop, product), headers={"If-None-Match": tag})
    assert r.status_code == 304, r.text
    assert r.content == b""
    assert r.headers["ETag"] == tag

    # a list of tags containing the current one, a weak form of it, and "*" also match
    for header in (f'"other", {tag}', f"W/{tag}", "*"):
        r = await api.client.get(product_url(shop, product), headers={"If-None-Match": header})
        assert r.status_code == 304, (header, r.text)
        assert r.content == b""
        assert r.headers["ETag"] == tag


async def test_get_product_if_none_match_other_tag_gives_200(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    tag = (await get_product(api, shop, product)).headers["ETag"]
    r = await api.client.get(
        product_url(shop, product), headers={"If-None-Match": '"0123456789abcdef"'}
    )
    assert r.status_code == 200, r.text
    assert r.json() == product
    assert r.headers["ETag"] == tag


async def test_get_product_old_etag_after_change_gives_200(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    old = (await get_product(api, shop, product)).headers["ETag"]
    p = await api.client.patch(product_url(shop, product), json={"stock": 1}, headers=staff.auth)
    assert p.status_code == 200, p.text
    r = await api.client.get(product_url(shop, product), headers={"If-None-Match": old})
    assert r.status_code == 200, r.text
    assert r.json()["stock"] == 1
    assert r.headers["ETag"] == p.headers["ETag"] != old


async def test_get_archived_product_is_404(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await api.client.delete(product_url(shop, product), headers=staff.auth)
    assert r.status_code == 204
    assert_problem(await get_product(api, shop, product), 404, "not-found")


async def test_get_product_of_another_shop_is_404(api: Api) -> None:
    _o1, _staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    theirs = await api.product(staff2, shop2)
    assert_problem(await get_product(api, shop1, theirs), 404, "not-found")
    # still there in its own shop
    assert (await get_product(api, shop2, theirs)).status_code == 200


async def test_get_unknown_product_is_404(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(product_url(shop, str(uuid.uuid4())))
    assert_problem(r, 404, "not-found")


async def test_get_product_bad_id_is_422(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await api.client.get(product_url(shop, "not-a-uuid"))
    assert_validation_problem(r, "product_id")


# --------------------------------------------------------------------------- PATCH


async def test_patch_applies_changes_bumps_version_and_etag(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, name="Old", price_cents=100, stock=3)
    before = await get_product(api, shop, product)
    changes = {
        "name": "New name",
        "description": "New description",
        "price_cents": 2500,
        "currency": "USD",
        "stock": 42,
        "category": "new-category",
    }
    r = await api.client.patch(product_url(shop, product), json=changes, headers=staff.auth)
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == PRODUCT_FIELDS
    for key, value in changes.items():
        assert got[key] == value, key
    assert got["version"] == product["version"] + 1 == 2
    assert got["id"] == product["id"]
    assert got["sku"] == product["sku"]
    assert got["shop_id"] == shop["id"]
    assert got["status"] == "active"
    assert got["created_at"] == product["created_at"]
    new_tag = r.headers["ETag"]
    assert STRONG_ETAG.match(new_tag)
    assert new_tag != before.headers["ETag"]

    after = await get_product(api, shop, product)
    assert after.json() == got
    assert after.headers["ETag"] == new_tag


async def test_patch_partial_leaves_other_fields_alone(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await api.client.patch(
        product_url(shop, product), json={"price_cents": 999}, headers=staff.auth
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["price_cents"] == 999
    for key in ("name", "description", "currency", "stock", "category", "sku"):
        assert got[key] == product[key], key


async def test_patch_with_current_if_match_succeeds_repeatedly(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    tag = (await get_product(api, shop, product)).headers["ETag"]
    for version, stock in ((2, 10), (3, 20)):
        r = await api.client.patch(
            product_url(shop, product),
            json={"stock": stock},
            headers={**staff.auth, "If-Match": tag},
        )
        assert r.status_code == 200, r.text
        assert r.json()["stock"] == stock
        assert r.json()["version"] == version
        assert r.headers["ETag"] != tag
        tag = r.headers["ETag"]


async def test_patch_if_match_star_and_list_succeed(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await api.client.patch(
        product_url(shop, product), json={"stock": 5}, headers={**staff.auth, "If-Match": "*"}
    )
    assert r.status_code == 200, r.text
    tag = r.headers["ETag"]
    r = await api.client.patch(
        product_url(shop, product),
        json={"stock": 6},
        headers={**staff.auth, "If-Match": f'"stale", {tag}'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["stock"] == 6


@pytest.mark.parametrize(
    "if_match", ["stale", '"0123456789abcdef0123456789abcdef"', "weak-current"]
)
async def test_patch_with_stale_if_match_is_412_and_changes_nothing(
    api: Api, if_match: str
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=3)
    first = await get_product(api, shop, product)
    old_tag = first.headers["ETag"]
    if if_match == "stale":
        # someone else changes the product after we read it
        r = await api.client.patch(
            product_url(shop, product), json={"stock": 4}, headers=staff.auth
        )
        assert r.status_code == 200, r.text
        if_match = old_tag
    elif if_match == "weak-current":
        # If-Match uses the strong comparison: a weak tag never matches
        if_match = f"W/{old_tag}"
    before = await get_product(api, shop, product)

    r = await api.client.patch(
        product_url(shop, product),
        json={"stock": 99, "name": "Should not stick"},
        headers={**staff.auth, "If-Match": if_match},
    )
    assert_problem(r, 412, "precondition-failed")

    after = await get_product(api, shop, product)
    assert after.status_code == 200
    assert after.json() == before.json()
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.json()["stock"] != 99
    assert after.json()["name"] == product["name"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sku", "NEW-SKU"),
        ("id", "00000000-0000-0000-0000-000000000001"),
        ("version", 7),
        ("status", "archived"),
        ("shop_id", "00000000-0000-0000-0000-000000000001"),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("updated_at", "2020-01-01T00:00:00Z"),
        ("colour", "blue"),
    ],
)
async def test_patch_read_only_or_unknown_field_is_422_and_unchanged(
    api: Api, field: str, value: Any
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    before = await get_product(api, shop, product)
    r = await api.client.patch(
        product_url(shop, product),
        json={"name": "Changed", field: value},
        headers=staff.auth,
    )
    body = assert_validation_problem(r, field)
    assert any(e["type"] == "extra_forbidden" for e in body["errors"])
    after = await get_product(api, shop, product)
    assert after.json() == before.json()
    assert after.headers["ETag"] == before.headers["ETag"]


@pytest.mark.parametrize(
    "field", ["name", "description", "price_cents", "currency", "stock", "category"]
)
async def test_patch_null_is_422_and_unchanged(api: Api, field: str) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    before = await get_product(api, shop, product)
    r = await api.client.patch(product_url(shop, product), json={field: None}, headers=staff.auth)
    assert_validation_problem(r, field)
    after = await get_product(api, shop, product)
    assert after.json() == before.json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_cents", -5),
        ("stock", -1),
        ("currency", "usd"),
        ("name", "N" * 201),
        ("name", ""),
        ("description", "D" * 5001),
        ("category", "C" * 65),
    ],
)
async def test_patch_invalid_value_is_422_and_unchanged(api: Api, field: str, value: Any) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    before = await get_product(api, shop, product)
    r = await api.client.patch(product_url(shop, product), json={field: value}, headers=staff.auth)
    assert_validation_problem(r, field)
    assert (await get_product(api, shop, product)).json() == before.json()


async def test_patch_by_non_staff_is_403_and_unchanged(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    stranger = await outsider(api)
    r = await api.client.patch(
        product_url(shop, product), json={"name": "Hijacked"}, headers=stranger.auth
    )
    assert_problem(r, 403, "forbidden")
    assert (await get_product(api, shop, product)).json() == product


async def test_patch_anonymous_is_401(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await api.client.patch(product_url(shop, product), json={"name": "Anon"})
    assert_problem(r, 401, "unauthenticated")
    assert (await get_product(api, shop, product)).json() == product


async def test_patch_unknown_product_is_404(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await api.client.patch(
        product_url(shop, str(uuid.uuid4())), json={"name": "Ghost"}, headers=staff.auth
    )
    assert_problem(r, 404, "not-found")


async def test_patch_archived_product_is_404(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    assert (
        await api.client.delete(product_url(shop, product), headers=staff.auth)
    ).status_code == 204
    r = await api.client.patch(
        product_url(shop, product), json={"name": "Zombie"}, headers=staff.auth
    )
    assert_problem(r, 404, "not-found")


async def test_patch_product_of_another_shop_is_404(api: Api) -> None:
    _o1, staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    theirs = await api.product(staff2, shop2)
    r = await api.client.patch(
        product_url(shop1, theirs), json={"name": "Cross-tenant"}, headers=staff1.auth
    )
    assert_problem(r, 404, "not-found")
    assert (await get_product(api, shop2, theirs)).json() == theirs


# --------------------------------------------------------------------------- DELETE


async def test_delete_archives_product(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    other = await api.product(staff, shop)
    r = await api.client.delete(product_url(shop, product), headers=staff.auth)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_problem(await get_product(api, shop, product), 404, "not-found")
    assert [p["id"] for p in await list_all(api, shop)] == [other["id"]]

    again = await api.client.delete(product_url(shop, product), headers=staff.auth)
    assert_problem(again, 404, "not-found")


async def test_delete_by_non_staff_is_403_and_product_stays(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    stranger = await outsider(api)
    r = await api.client.delete(product_url(shop, product), headers=stranger.auth)
    assert_problem(r, 403, "forbidden")
    assert (await get_product(api, shop, product)).json() == product
    assert [p["id"] for p in await list_all(api, shop)] == [product["id"]]


async def test_delete_anonymous_is_401(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    r = await api.client.delete(product_url(shop, product))
    assert_problem(r, 401, "unauthenticated")
    assert (await get_product(api, shop, product)).status_code == 200


async def test_delete_unknown_product_is_404(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await api.client.delete(product_url(shop, str(uuid.uuid4())), headers=staff.auth)
    assert_problem(r, 404, "not-found")


async def test_delete_product_of_another_shop_is_404(api: Api) -> None:
    _o1, staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    theirs = await api.product(staff2, shop2)
    r = await api.client.delete(product_url(shop1, theirs), headers=staff1.auth)
    assert_problem(r, 404, "not-found")
    assert (await get_product(api, shop2, theirs)).json() == theirs


# --------------------------------------------------------------------------- bulk


def count_product_inserts(counter: QueryCounter) -> int:
    return sum(
        1 for s in counter.statements if s.lstrip().upper().startswith("INSERT INTO PRODUCTS")
    )


async def test_bulk_creates_1000_with_one_insert(
    api: Api, count_queries: Callable[[], QueryCounter]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    items = [payload(sku=f"BULK-{i:04d}", price_cents=i, stock=i) for i in range(1000)]

    count_queries().reset()
    r = await bulk(api, staff, shop, items)
    assert r.status_code == 200, r.text
    counter = count_queries()
    assert count_product_inserts(counter) == 1, counter.statements
    assert not [s for s in counter.statements if s.lstrip().upper().startswith("UPDATE PRODUCTS")]
    assert r.json() == {"created": 1000, "updated": 0}

    listed = await list_all(api, shop)
    assert len(listed) == 1000
    by_sku = {p["sku"]: p for p in listed}
    assert set(by_sku) == {f"BULK-{i:04d}" for i in range(1000)}
    for i in (0, 1, 500, 999):
        p = by_sku[f"BULK-{i:04d}"]
        assert (p["price_cents"], p["stock"], p["version"], p["status"]) == (i, i, 1, "active")


async def test_bulk_upsert_counts_created_and_updated_and_changes_values(
    api: Api, count_queries: Callable[[], QueryCounter]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    originals = [
        payload(sku=f"UP-{i:04d}", name=f"Original {i}", price_cents=100, stock=1)
        for i in range(1000)
    ]
    r = await bulk(api, staff, shop, originals)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1000, "updated": 0}
    before = {p["sku"]: p for p in await list_all(api, shop)}

    changed = [
        {**item, "name": f"Changed {i}", "price_cents": 200 + i, "stock": 50, "category": "new"}
        for i, item in enumerate(originals[:600])
    ]
    fresh = [payload(sku=f"NEW-{i:04d}", price_cents=7) for i in range(400)]
    count_queries().reset()
    r = await bulk(api, staff, shop, changed + fresh)
    assert r.status_code == 200, r.text
    assert count_product_inserts(count_queries()) == 1
    assert r.json() == {"created": 400, "updated": 600}

    after = {p["sku"]: p for p in await list_all(api, shop)}
    assert len(after) == 1400
    for i in range(600):
        p = after[f"UP-{i:04d}"]
        assert p["id"] == before[p["sku"]]["id"]
        assert (p["name"], p["price_cents"], p["stock"], p["category"]) == (
            f"Changed {i}",
            200 + i,
            50,
            "new",
        )
        assert p["version"] == 2
    for i in range(600, 1000):
        assert after[f"UP-{i:04d}"] == before[f"UP-{i:04d}"]
    for i in range(400):
        p = after[f"NEW-{i:04d}"]
        assert (p["price_cents"], p["version"]) == (7, 1)

    # the single-product view agrees, with a new ETag
    one = before["UP-0000"]
    g = await get_product(api, shop, one)
    assert g.json()["name"] == "Changed 0"
    assert g.json()["price_cents"] == 200


async def test_bulk_small_mixed_batch(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    existing = await api.product(staff, shop, sku="KEEP-1", price_cents=10)
    r = await bulk(
        api,
        staff,
        shop,
        [payload(sku="KEEP-1", price_cents=11), payload(sku="FRESH-1"), payload(sku="FRESH-2")],
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 2, "updated": 1}
    g = await get_product(api, shop, existing)
    assert g.json()["price_cents"] == 11
    assert g.json()["version"] == 2


async def test_bulk_1001_items_is_422_and_writes_nothing(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    items = [payload(sku=f"TOO-{i:04d}") for i in range(1001)]
    r = await bulk(api, staff, shop, items)
    assert_validation_problem(r, "items")
    assert await list_all(api, shop) == []


async def test_bulk_empty_is_422(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await bulk(api, staff, shop, [])
    assert_validation_problem(r, "items")


async def test_bulk_duplicate_sku_in_one_request_is_422_and_writes_nothing(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    existing = await api.product(staff, shop, sku="EXISTING", price_cents=1)
    items = [
        payload(sku="EXISTING", price_cents=2),
        payload(sku="A-1"),
        payload(sku="DUPE"),
        payload(sku="B-1"),
        payload(sku="DUPE"),
    ]
    r = await bulk(api, staff, shop, items)
    assert_validation_problem(r, "items")
    listed = await list_all(api, shop)
    assert [p["id"] for p in listed] == [existing["id"]]
    assert listed[0] == existing


async def test_bulk_one_invalid_item_is_422_and_writes_nothing(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    items = [payload(sku=f"OK-{i}") for i in range(5)]
    items.append({**payload(sku="BAD-1"), "price_cents": -1})
    r = await bulk(api, staff, shop, items)
    body = assert_validation_problem(r, "items", "price_cents")
    assert any(e["loc"][:4] == ["body", "items", 5, "price_cents"] for e in body["errors"])
    assert await list_all(api, shop) == []


async def test_bulk_item_with_read_only_field_is_422(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    r = await bulk(api, staff, shop, [{**payload(), "status": "archived"}])
    assert_validation_problem(r, "status")
    assert await list_all(api, shop) == []


async def test_bulk_by_non_staff_is_403_and_writes_nothing(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    stranger = await outsider(api)
    r = await bulk(api, stranger, shop, [payload() for _ in range(3)])
    assert_problem(r, 403, "forbidden")
    assert await list_all(api, shop) == []


async def test_bulk_anonymous_is_401(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    r = await bulk(api, None, shop, [payload()])
    assert_problem(r, 401, "unauthenticated")
    assert await list_all(api, shop) == []


async def test_bulk_unknown_shop_is_404(api: Api) -> None:
    _owner, staff, _shop = await shop_with_staff(api)
    r = await bulk(api, staff, {"id": str(uuid.uuid4())}, [payload()])
    assert_problem(r, 404, "not-found")


async def test_bulk_reactivates_archived_sku(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, sku="PHOENIX", name="Old bird", price_cents=10)
    assert (
        await api.client.delete(product_url(shop, product), headers=staff.auth)
    ).status_code == 204
    assert await list_all(api, shop) == []

    r = await bulk(api, staff, shop, [payload(sku="PHOENIX", name="Reborn", price_cents=20)])
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 0, "updated": 1}

    g = await get_product(api, shop, product)
    assert g.status_code == 200, g.text
    got = g.json()
    assert got["id"] == product["id"]
    assert got["status"] == "active"
    assert got["name"] == "Reborn"
    assert got["price_cents"] == 20
    assert got["version"] > product["version"]
    assert [p["id"] for p in await list_all(api, shop)] == [product["id"]]


async def test_bulk_is_scoped_to_the_shop(api: Api) -> None:
    _o1, staff1, shop1 = await shop_with_staff(api)
    _o2, staff2, shop2 = await shop_with_staff(api)
    theirs = await api.product(staff2, shop2, sku="SAME", price_cents=1)
    r = await bulk(api, staff1, shop1, [payload(sku="SAME", price_cents=2)])
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 0}
    assert (await get_product(api, shop2, theirs)).json() == theirs
    mine = await list_all(api, shop1)
    assert len(mine) == 1
    assert mine[0]["sku"] == "SAME"
    assert mine[0]["id"] != theirs["id"]
    assert mine[0]["price_cents"] == 2


async def test_bulk_created_products_are_individually_readable_with_etag(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    sku = unique("ONE")
    r = await bulk(api, staff, shop, [payload(sku=sku)])
    assert r.status_code == 200, r.text
    (listed,) = await list_all(api, shop)
    g = await get_product(api, shop, listed)
    assert g.status_code == 200
    assert g.json() == listed
    assert STRONG_ETAG.match(g.headers["ETag"])
