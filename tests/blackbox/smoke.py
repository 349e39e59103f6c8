"""Black-box smoke test of a running Storefront, over HTTP only (the standard library's
client): what a first customer does. Used by `make image-test` (against the container
image) and `make compose-test` (against the compose stack, with ``--pay``).

    python -m tests.blackbox.smoke --base-url http://127.0.0.1:8000 [--pay]

Registers a shop owner and a customer, signs both in, opens a shop, adds a product, places
an order (Idempotency-Key) and, with ``--pay``, pays it and reads it back as paid. Each step
prints one line; the first unexpected answer exits 1 with the response.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

PASSWORD = "smoke-Test-passw0rd-42"  # a throwaway account of the smoke test


class SmokeFailure(Exception):
    pass


class Client:
    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        expect: int = 200,
        idempotent: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        if status != expect:
            raise SmokeFailure(f"{method} {path}: expected {expect}, got {status}: {text[:600]}")
        return json.loads(text) if text else None


def wait_ready(client: Client, seconds: float) -> None:
    """Until /readyz answers 200 (the database is reachable and migrated), or fail."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            client.call("GET", "/readyz")
            return
        except (SmokeFailure, OSError) as exc:
            last = str(exc)
        time.sleep(1)
    raise SmokeFailure(f"/readyz not ready after {seconds:.0f} s: {last}")


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def sign_up(client: Client, role: str) -> str:
    email = f"smoke-{role}-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": f"Smoke {role}"}
    client.call("POST", "/api/v1/auth/register", body, expect=201)
    tokens = client.call("POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    step(f"registered and signed in the {role} {email}")
    return str(tokens["access_token"])


def run(client: Client, *, pay: bool) -> None:
    client.call("GET", "/livez")
    owner, customer = sign_up(client, "owner"), sign_up(client, "customer")
    slug = f"smoke-{uuid.uuid4().hex[:10]}"
    shop = client.call(
        "POST", "/api/v1/shops", {"name": "Smoke Shop", "slug": slug}, token=owner, expect=201
    )
    step(f"opened the shop {shop['id']}")
    product = client.call(
        "POST",
        f"/api/v1/shops/{shop['id']}/products",
        {
            "sku": "SMOKE-1",
            "name": "Smoke test coffee",
            "description": "Placed by the smoke test.",
            "price_cents": 1250,
            "currency": "EUR",
            "stock": 10,
            "category": "coffee",
        },
        token=owner,
        expect=201,
    )
    step(f"added the product {product['id']}")
    order = client.call(
        "POST",
        f"/api/v1/shops/{shop['id']}/orders",
        {
            "lines": [{"product_id": product["id"], "quantity": 2}],
            "shipping_address": {
                "name": "Ada Lovelace",
                "line1": "12 Analytical Row",
                "city": "London",
                "postal_code": "N1 9GU",
                "country": "GB",
            },
        },
        token=customer,
        expect=201,
        idempotent=True,
    )
    if order["status"] != "pending" or order["total_cents"] != 2500:
        raise SmokeFailure(f"unexpected order: {order}")
    step(f"placed the order {order['id']} (pending, 25.00 EUR)")
    if not pay:
        return
    orders = f"/api/v1/shops/{shop['id']}/orders/{order['id']}"
    payment = client.call(
        "POST",
        f"{orders}/payments",
        {"payment_method": "pm_card_visa"},
        token=customer,
        expect=201,
        idempotent=True,
    )
    if payment["status"] != "succeeded":
        raise SmokeFailure(f"unexpected payment: {payment}")
    paid = client.call("GET", orders, token=customer)
    if paid["status"] != "paid":
        raise SmokeFailure(f"the order is {paid['status']} after its payment succeeded")
    step(f"paid it ({payment['id']}): the order is paid")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--pay", action="store_true", help="also pay the order")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    client = Client(args.base_url)
    try:
        wait_ready(client, args.wait)
        step(f"{args.base_url} is ready")
        run(client, pay=args.pay)
    except SmokeFailure as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    step("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
