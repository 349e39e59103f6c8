"""GET /api/v1/users/me/shops: the shops the caller belongs to, with their role, paginated."""

from __future__ import annotations

import re
from typing import Any

import pytest

from storefront.resources import Resources
from tests.support.factories import V1, Api, UserHandle
from tests.support.identity import promote_to_admin
from tests.support.problems import assert_problem

MY_SHOPS = f"{V1}/users/me/shops"
SHOP_FIELDS = {"id", "name", "slug"}  # the contract (API.md): a summary of the shop


async def my_shops(api: Api, user: UserHandle, **params: Any) -> dict[str, Any]:
    r = await api.client.get(MY_SHOPS, params=params, headers=user.auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"  # personal
    body: dict[str, Any] = r.json()
    assert set(body) == {"items", "next_cursor"}
    return body


def listed(body: dict[str, Any]) -> dict[str, str]:
    """shop id -> role, checking each item's shape on the way."""
    for item in body["items"]:
        assert set(item) == {"shop", "role"}
        assert set(item["shop"]) == SHOP_FIELDS
    return {item["shop"]["id"]: item["role"] for item in body["items"]}


def next_url(link: str) -> str:
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


async def test_lists_only_the_callers_memberships_with_their_role(api: Api) -> None:
    me, other, third = await api.user(), await api.user(), await api.user()
    mine = await api.shop(me, name="Mine")
    theirs = await api.shop(other, name="Theirs")
    await api.add_member(other, theirs, me, "staff")
    co_owned = await api.shop(third, name="Co-owned")
    await api.add_member(third, co_owned, me, "owner")
    not_mine = await api.shop(other, name="Not mine")  # a shop the caller has nothing to do with
    await api.add_member(other, theirs, third, "staff")  # someone else's membership

    body = await my_shops(api, me)

    assert listed(body) == {mine["id"]: "owner", theirs["id"]: "staff", co_owned["id"]: "owner"}
    assert body["next_cursor"] is None
    # in shop creation order (UUIDv7 ids), the shop as GET /shops/{id} shows it
    assert [item["shop"]["id"] for item in body["items"]] == [
        mine["id"],
        theirs["id"],
        co_owned["id"],
    ]
    shown = (await api.client.get(f"{V1}/shops/{theirs['id']}")).json()
    assert body["items"][1]["shop"] == {k: shown[k] for k in SHOP_FIELDS}
    assert listed(await my_shops(api, other)) == {theirs["id"]: "owner", not_mine["id"]: "owner"}
    assert listed(await my_shops(api, third)) == {theirs["id"]: "staff", co_owned["id"]: "owner"}


async def test_role_changes_and_removal_show_at_once(api: Api) -> None:
    owner, member = await api.user(), await api.user()
    shop = await api.shop(owner)
    await api.add_member(owner, shop, member, "staff")
    assert listed(await my_shops(api, member)) == {shop["id"]: "staff"}

    await api.add_member(owner, shop, member, "owner")
    assert listed(await my_shops(api, member)) == {shop["id"]: "owner"}

    r = await api.client.delete(f"{V1}/shops/{shop['id']}/members/{member.id}", headers=owner.auth)
    assert r.status_code == 204, r.text
    assert await my_shops(api, member) == {"items": [], "next_cursor": None}


async def test_a_user_without_shops_gets_an_empty_page(api: Api) -> None:
    owner, loner = await api.user(), await api.user()
    await api.shop(owner)

    r = await api.client.get(MY_SHOPS, headers=loner.auth)

    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}
    assert "link" not in r.headers


async def test_pages_follow_the_cursor_and_the_link_header(api: Api) -> None:
    me = await api.user()
    shops = [(await api.shop(me, name=f"Shop {i}"))["id"] for i in range(5)]

    seen: list[str] = []
    r = await api.client.get(MY_SHOPS, params={"limit": 2}, headers=me.auth)
    pages = 0
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [item["shop"]["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            assert "link" not in r.headers
            break
        assert len(body["items"]) == 2
        url = next_url(r.headers["link"])
        assert f"cursor={body['next_cursor']}" in url
        r = await api.client.get(url, headers=me.auth)

    assert pages == 3
    assert seen == shops  # every shop once, in order

    # the cursor given as a parameter works the same way, and limit bounds the page
    first = await my_shops(api, me, limit=3)
    rest = await my_shops(api, me, limit=3, cursor=first["next_cursor"])
    assert [i["shop"]["id"] for i in first["items"] + rest["items"]] == shops
    assert rest["next_cursor"] is None


async def test_a_platform_admin_sees_only_shops_they_belong_to(
    api: Api, resources: Resources
) -> None:
    owner, admin = await api.user(), await api.user()
    await api.shop(owner)  # admins may act here as owners, but do not belong to it
    await promote_to_admin(resources, admin)
    assert (await api.client.get(f"{V1}/admin/audit-events", headers=admin.auth)).status_code == 200
    assert await my_shops(api, admin) == {"items": [], "next_cursor": None}

    own = await api.shop(admin)
    assert listed(await my_shops(api, admin)) == {own["id"]: "owner"}


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "not-a-cursor"}],
)
async def test_bad_page_parameters_are_a_422_problem(api: Api, params: dict[str, Any]) -> None:
    me = await api.user()
    await api.shop(me)

    r = await api.client.get(MY_SHOPS, params=params, headers=me.auth)

    assert_problem(r, 422)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
async def test_signed_out_callers_get_a_401_problem(api: Api, headers: dict[str, str]) -> None:
    r = await api.client.get(MY_SHOPS, headers=headers)

    assert_problem(r, 401)
    assert r.headers["www-authenticate"].lower().startswith("bearer")


async def test_the_endpoint_is_in_the_openapi_document(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()

    operation = schema["paths"][MY_SHOPS]["get"]
    assert operation.get("security"), operation  # the docs page's Authorize button applies
    assert {p["name"] for p in operation["parameters"]} == {"limit", "cursor"}
    assert 'rel="next"' in operation["description"]
    assert {"200", "401", "422"} <= set(operation["responses"])
    item = schema["components"]["schemas"]["MyShopOut"]
    assert set(item["properties"]) == {"shop", "role"}
    shop = schema["components"]["schemas"]["ShopSummaryOut"]
    assert set(shop["properties"]) == SHOP_FIELDS
