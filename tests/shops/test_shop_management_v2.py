"""API v2's management operations refuse whoever v1 refuses, with v1's status and problem,
and change nothing; hostile bodies are 422 problems that change nothing; the links a
caller may not follow are absent (decisions 0142 and 0206)."""

from __future__ import annotations

from typing import Any

from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.problems import assert_problem

V2 = "/api/v2"


async def _links(api: Api, url: str, user: UserHandle | None) -> set[str]:
    r = await api.client.get(url, headers=user.auth if user else {})
    assert r.status_code == 200, r.text
    return set(r.json()["_links"])


async def test_a_customer_gets_no_management_links_and_v1s_refusals(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    product = await api.product(staff, shop, stock=5)
    base = f"{V2}/shops/{shop['id']}"

    assert not {"sf:sales", "sf:bulk", "sf:webhooks", "sf:audit", "sf:member"} & await _links(
        api, base, customer
    )
    assert "sf:order-limits" not in await _links(api, base, None)  # anonymous
    assert not {"edit", "sf:archive"} & await _links(
        api, f"{base}/products/{product['id']}", customer
    )
    limits = await _links(api, f"{base}/order-limits", customer)
    assert "edit" not in limits

    # following the absent links anyway: what v1 answers, and nothing changes
    hook = {"url": "https://hooks.example.com/x", "events": ["order.placed"]}
    refusals: list[tuple[str, str, Any, int]] = [
        ("PUT", f"{base}/members/{customer.id}", {"role": "owner"}, 403),
        ("DELETE", f"{base}/members/{staff.id}", None, 403),
        ("POST", f"{base}/webhooks", hook, 403),
        ("GET", f"{base}/webhooks", None, 403),
        ("GET", f"{base}/audit-events", None, 403),
        ("GET", f"{base}/sales", None, 404),  # the sales' existence is not disclosed
        ("PATCH", f"{base}/order-limits", {"max_line_quantity": 1}, 403),
        ("PATCH", f"{base}/products/{product['id']}", {"name": "Mine"}, 403),
        ("DELETE", f"{base}/products/{product['id']}", None, 403),
        ("POST", f"{base}/products/bulk", {"items": [product_body("X-1")]}, 403),
        ("GET", f"{V2}/admin/audit-events", None, 403),
    ]
    for method, url, body, status in refusals:
        r = await api.client.request(method, url, json=body, headers=customer.auth)
        assert_problem(r, status)
    # staff are not owners
    r = await api.client.put(
        f"{base}/members/{customer.id}", json={"role": "staff"}, headers=staff.auth
    )
    assert_problem(r, 403)
    r = await api.client.get(f"{base}/webhooks", headers=staff.auth)
    assert_problem(r, 403)

    # nothing changed
    r = await api.client.get(f"{base}/products/{product['id']}", headers=owner.auth)
    assert r.json()["name"] == product["name"]
    assert r.json()["status"] == "active"
    r = await api.client.get(f"{base}/webhooks", headers=owner.auth)
    assert r.json()["count"] == 0
    r = await api.client.get(base, headers=customer.auth)
    assert "role" not in r.json()


def product_body(sku: str, **overrides: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": "Thing",
        "price_cents": 100,
        "currency": "EUR",
        "stock": 1,
        "category": "misc",
        **overrides,
    }


async def test_hostile_bodies_are_422_and_change_nothing(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=5)
    base = f"{V2}/shops/{shop['id']}"
    url = f"{base}/products/{product['id']}"
    hostile: list[tuple[str, str, Any]] = [
        ("PATCH", url, {"status": "archived"}),  # not a field one may change
        ("PATCH", url, {"version": 99}),
        ("PATCH", url, {"price_cents": -1}),
        ("PATCH", url, {"name": "x" * 10_000}),
        ("PATCH", url, {"name": "line\nbreak"}),
        ("PATCH", url, ["not", "an", "object"]),
        ("POST", f"{base}/products/bulk", {"items": []}),
        ("POST", f"{base}/products/bulk", {"items": [product_body("A"), product_body("A")]}),
        ("PUT", f"{base}/members/{staff.id}", {"role": "admin"}),
        ("PATCH", f"{base}/order-limits", {"max_line_quantity": -5}),
        ("POST", f"{base}/webhooks", {"url": "http://127.0.0.1/hook", "events": ["order.placed"]}),
        ("POST", f"{base}/webhooks", {"url": "https://hooks.example.com", "events": []}),
        ("PUT", f"{V2}/users/me/consents", {"marketing_email": "yes"}),
        ("PUT", f"{V2}/users/me/consents", {"no_such_purpose": True}),
        ("PATCH", f"{V2}/users/me", {"display_name": None}),
    ]
    for method, target, body in hostile:
        r = await api.client.request(method, target, json=body, headers=owner.auth)
        assert_problem(r, 422)

    r = await api.client.get(url, headers=owner.auth)
    assert r.json()["name"] == product["name"]
    assert r.json()["price"]["amount"] == f"{product['price_cents'] / 100:.2f}"
    assert r.json()["version"] == product["version"]
    r = await api.client.get(f"{base}/webhooks", headers=owner.auth)
    assert r.json()["count"] == 0
    r = await api.client.get(f"{base}/order-limits", headers=owner.auth)
    assert r.json()["shop_set"] == []
    r = await api.client.get(f"{V2}/users/me/consents", headers=owner.auth)
    assert r.json()["history"] == []


async def test_a_stale_if_match_is_412_and_any_representations_tag_edits(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V2}/shops/{shop['id']}/products/{product['id']}"
    hal = await api.client.get(url, headers=staff.auth)
    packed = await api.client.get(url, headers={"Accept": "application/msgpack", **staff.auth})
    assert hal.headers["etag"] != packed.headers["etag"]  # one tag per representation

    r = await api.client.patch(
        url, json={"name": "Packed"}, headers={"If-Match": packed.headers["etag"], **staff.auth}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Packed"
    r = await api.client.patch(
        url, json={"name": "Stale"}, headers={"If-Match": hal.headers["etag"], **staff.auth}
    )
    assert_problem(r, 412)
    r = await api.client.get(url, headers=staff.auth)
    assert r.json()["name"] == "Packed"
