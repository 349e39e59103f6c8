"""API v2 from its root, by links alone: a client that knows ``/api/v2`` and the link
relations registers, signs in, opens a shop, names a staff member, writes the catalog, sets
the hold limits, manages webhooks, reads the audit log and the sales, and a customer orders,
pays, manages their account (sessions, password, two-factor sign-in), their consents and
data export, and erases their account. Every URL it uses comes from a response's links; the
links a caller is not allowed to follow are absent (decisions 0142 and 0206)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
import pyotp

from tests.support.events import eventually
from tests.support.factories import PASSWORD, Api
from tests.support.servers import LocalStripe

V2 = "/api/v2"
HAL = "application/hal+json"
OWNER_ONLY = {"sf:webhooks", "sf:audit", "sf:member"}
STAFF_ONLY = {"sf:sales", "sf:bulk"}


class Client:
    """A client holding nothing but a token (once signed in)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.token: str | None = None

    async def call(
        self,
        method: str,
        href: str,
        body: Any = None,
        *,
        expect: int = 200,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        sent = {"Accept": HAL, **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        r = await self.api.client.request(method, href, json=body, headers=sent)
        assert r.status_code == expect, (method, href, r.status_code, r.text)
        return r

    async def get(self, href: str) -> dict[str, Any]:
        r = await self.call("GET", href)
        assert r.headers["content-type"].startswith(HAL)
        return dict(r.json())

    async def send(self, method: str, href: str, body: Any = None, expect: int = 200) -> Any:
        key = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
        r = await self.call(method, href, body, expect=expect, headers=key)
        return r.json() if r.content else None


def href(document: dict[str, Any], rel: str, **template: str) -> str:
    assert rel in document["_links"], (rel, sorted(document["_links"]))
    target = str(document["_links"][rel]["href"])
    for name, value in template.items():
        target = target.replace("{" + name + "}", value)
    return target


async def signed_up(api: Api, name: str) -> tuple[Client, dict[str, Any]]:
    """Registers and signs in through the root's links; the client and its account."""
    client = Client(api)
    root = await client.get(V2)
    assert {"sf:me", "sf:my-shops", "sf:open-shop"} <= root["_links"].keys()
    email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
    await client.send(
        "POST",
        href(root, "sf:register"),
        {"email": email, "password": PASSWORD, "display_name": name},
        expect=201,
    )
    tokens = await client.send(
        "POST", href(root, "sf:login"), {"email": email, "password": PASSWORD}
    )
    client.token = tokens["access_token"]
    me = await client.get(href(root, "sf:me"))
    assert me["email"] == email
    return client, me


async def test_everything_a_v1_client_does_from_the_v2_root_by_links(
    api: Api, localstripe: LocalStripe
) -> None:
    owner, owner_me = await signed_up(api, "owner")
    staffer, staffer_me = await signed_up(api, "staff")
    customer, customer_me = await signed_up(api, "customer")

    # --- shop management (the owner) ------------------------------------------------------
    shop = await owner.send(
        "POST",
        href(owner_me, "sf:open-shop"),
        {"name": "Walk", "slug": f"walk-{uuid.uuid4().hex[:8]}"},
        expect=201,
    )
    assert shop["role"] == "owner"
    assert shop["_links"].keys() >= OWNER_ONLY | STAFF_ONLY
    mine = await owner.get(href(owner_me, "sf:my-shops"))
    assert [(s["id"], s["role"]) for s in mine["_embedded"]["shops"]] == [(shop["id"], "owner")]
    member = await owner.send(
        "PUT", href(shop, "sf:member", user_id=staffer_me["id"]), {"role": "staff"}
    )
    assert member["role"] == "staff"

    as_staff = await staffer.get(href(shop, "self"))
    assert as_staff["role"] == "staff"
    assert as_staff["_links"].keys() >= STAFF_ONLY
    assert not OWNER_ONLY & as_staff["_links"].keys()
    as_customer = await customer.get(href(shop, "self"))
    assert "role" not in as_customer
    assert not (OWNER_ONLY | STAFF_ONLY) & as_customer["_links"].keys()
    assert {"sf:products", "sf:orders", "sf:order-limits"} <= as_customer["_links"].keys()

    # --- catalog writes (the staff member) -------------------------------------------------
    product = await staffer.send(
        "POST",
        href(as_staff, "sf:products"),
        {
            "sku": "MUG-1",
            "name": "Mug",
            "price_cents": 1250,
            "currency": "EUR",
            "stock": 10,
            "category": "kitchen",
        },
        expect=201,
    )
    r = await staffer.call("GET", href(product, "self"))
    tag, product = r.headers["etag"], r.json()
    edited = await staffer.call(
        "PATCH", href(product, "edit"), {"name": "Big mug"}, headers={"If-Match": tag}
    )
    assert edited.json()["name"] == "Big mug"
    # the tag read before the change is stale now: 412, nothing changed
    await staffer.call(
        "PATCH", href(product, "edit"), {"name": "Lost"}, expect=412, headers={"If-Match": tag}
    )
    bulk = await staffer.send(
        "POST",
        href(as_staff, "sf:bulk"),
        {
            "items": [
                {
                    "sku": "MUG-1",
                    "name": "Mug",
                    "price_cents": 1300,
                    "currency": "EUR",
                    "stock": 9,
                    "category": "kitchen",
                },
                {
                    "sku": "TEA-1",
                    "name": "Tea",
                    "price_cents": 450,
                    "currency": "EUR",
                    "stock": 5,
                    "category": "kitchen",
                },
            ]
        },
    )
    assert (bulk["created"], bulk["updated"]) == (1, 1)
    summary = await customer.get(href(as_customer, "sf:catalog-summary"))
    [kitchen] = summary["categories"]
    assert kitchen["products"] == 2
    assert kitchen["max_price"] == {"amount": "13.00", "currency": "EUR"}
    limits = await staffer.get(href(as_staff, "sf:order-limits"))
    limits = await staffer.send("PATCH", href(limits, "edit"), {"max_line_quantity": 5})
    assert limits["max_line_quantity"] == 5
    assert "edit" not in (await customer.get(href(as_customer, "sf:order-limits")))["_links"]

    # --- an order, paid (the customer) -----------------------------------------------------
    products = await customer.get(href(as_customer, "sf:products"))
    mug = next(p for p in products["_embedded"]["products"] if p["sku"] == "MUG-1")
    assert not {"edit", "sf:archive"} & mug["_links"].keys()
    order = await customer.send(
        "POST",
        href(as_customer, "sf:orders"),
        Api.order_body(({"id": mug["id"]}, 2)),
        expect=201,
    )
    payment = await customer.send(
        "POST", href(order, "sf:pay"), {"payment_method": "pm_card_visa"}, expect=201
    )
    assert payment["status"] == "succeeded"
    assert payment["amount"] == {"amount": "26.00", "currency": "EUR"}

    # --- webhooks, audit and sales (the owner and the staff) --------------------------------
    hooks = await owner.get(href(shop, "sf:webhooks"))
    assert hooks["count"] == 0
    hook = await owner.send(
        "POST",
        href(hooks, "self"),
        {"url": "https://hooks.example.com/storefront", "events": ["order.placed"]},
        expect=201,
    )
    assert hook["secret"]
    assert (await owner.get(href(hooks, "self")))["count"] == 1
    await owner.send("DELETE", href(hook, "sf:delete"), expect=204)
    assert (await owner.get(href(hooks, "self")))["count"] == 0
    audit = await owner.get(href(shop, "sf:audit"))
    actions = {entry["action"] for entry in audit["_embedded"]["entries"]}
    assert {"shop.member_set", "webhook.created", "webhook.deleted"} <= actions
    assert "sf:admin-audit" not in (await owner.get(V2))["_links"]  # platform admins only

    async def paid_today() -> int:
        sales = await staffer.get(href(as_staff, "sf:sales"))
        return sum(day["orders_paid"] for day in sales["days"])

    await eventually(paid_today, lambda n: n == 1, what="the payment in the sales")

    # --- the customer's account -------------------------------------------------------------
    sessions = await customer.get(href(customer_me, "sf:sessions"))
    assert [s["current"] for s in sessions["_embedded"]["sessions"]] == [True]
    new_password = f"{uuid.uuid4()}-Walk"
    await customer.send(
        "POST",
        href(customer_me, "sf:password"),
        {"current_password": PASSWORD, "new_password": new_password},
        expect=204,
    )
    enrolment = await customer.send("POST", href(customer_me, "sf:mfa-enrol"), expect=201)
    code = pyotp.TOTP(enrolment["secret"]).now()
    recovery = await customer.send("POST", href(enrolment, "sf:mfa-confirm"), {"code": code})
    me = await customer.get(href(recovery, "sf:me"))
    assert me["mfa_enabled"] is True
    assert "sf:mfa-enrol" not in me["_links"]
    await customer.send(
        "DELETE", href(me, "sf:mfa-remove"), {"code": recovery["recovery_codes"][0]}, expect=204
    )
    me = await customer.send("PATCH", href(me, "edit"), {"display_name": "Grace"})
    assert (me["display_name"], me["mfa_enabled"]) == ("Grace", False)
    assert "sf:mfa-enrol" in me["_links"]

    # --- privacy: consents, export, erasure -------------------------------------------------
    consents = await customer.get(href(me, "sf:consents"))
    consents = await customer.send("PUT", href(consents, "edit"), {"marketing_email": True})
    assert {c["purpose"]: c["granted"] for c in consents["consents"]}["marketing_email"] is True
    export = await customer.send("POST", href(me, "sf:exports"), expect=202)
    ready = await eventually(
        lambda: customer.get(href(export, "self")),
        lambda doc: "sf:download" in doc["_links"],
        what="the export ready",
    )
    archive = await customer.call(
        "GET", href(ready, "sf:download"), headers={"Accept": "application/json"}
    )
    assert archive.json()["user_id"] == customer_me["id"]
    await customer.send("DELETE", href(me, "sf:erase"), expect=202)
    await customer.call("GET", href(me, "self"), expect=401)
