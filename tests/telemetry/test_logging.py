"""Structured logs: one JSON access line per request, ids on every line, nothing secret."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pyotp
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from storefront.app import create_app
from storefront.identity import mfa
from storefront.telemetry.logging import configure_logging
from tests.conftest import make_settings
from tests.support.factories import V1, ProductInFactory


@pytest.fixture
async def logged(database_url: str) -> AsyncIterator[tuple[FastAPI, io.StringIO]]:
    settings = make_settings(
        database_url, observability={"log_format": "json", "log_level": "DEBUG"}
    )
    app = create_app(settings)
    buffer = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=buffer)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app, buffer
    from tests.conftest import _empty_tables

    await _empty_tables(app.state.resources)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# TOTP codes are checked at a moment set here (mid-step), not at whatever the clock says
TOTP_NOW = float(int(time.time()) // mfa.STEP_SECONDS * mfa.STEP_SECONDS + 10)


@pytest.fixture(autouse=True)
def totp_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mfa, "totp_clock", lambda: TOTP_NOW)


def fresh_step() -> int:
    return int(TOTP_NOW) // mfa.STEP_SECONDS


async def test_sign_up_sign_in_mfa_and_an_order_log_no_secret_or_personal_data(
    logged: tuple[FastAPI, io.StringIO],
) -> None:
    app, buffer = logged
    email = f"Secret.Person.{uuid.uuid4().hex[:6]}@example.com"
    password = f"pw-{uuid.uuid4().hex}-very-long"
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post(
            f"{V1}/auth/register",
            json={"email": email, "password": password, "display_name": "Ada"},
        )
        assert r.status_code == 201, r.text
        wrong = await c.post(
            f"{V1}/auth/login", json={"email": email, "password": password + "-wrong"}
        )
        assert wrong.status_code == 401
        invalid = await c.post(f"{V1}/auth/register", json={"email": email, "password": 1})
        assert invalid.status_code == 422
        login = await c.post(f"{V1}/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        pair = login.json()
        auth = {"Authorization": f"Bearer {pair['access_token']}"}

        # MFA: enrol, confirm, then sign in again with a code
        enrol = await c.post(f"{V1}/auth/mfa/totp", headers=auth)
        assert enrol.status_code == 201, enrol.text
        secret = enrol.json()["secret"]
        step = fresh_step()
        confirm_code = pyotp.TOTP(secret).generate_otp(step - 1)
        confirmed = await c.post(
            f"{V1}/auth/mfa/totp/confirm", json={"code": confirm_code}, headers=auth
        )
        assert confirmed.status_code == 200, confirmed.text
        recovery_codes = confirmed.json()["recovery_codes"]
        challenge = await c.post(f"{V1}/auth/login", json={"email": email, "password": password})
        mfa_token = challenge.json()["mfa_token"]
        bad_code = await c.post(
            f"{V1}/auth/mfa/verify", json={"mfa_token": mfa_token, "code": "000000"}
        )
        assert bad_code.status_code == 401
        code = pyotp.TOTP(secret).generate_otp(step)
        verified = await c.post(
            f"{V1}/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code}
        )
        assert verified.status_code == 200, verified.text
        tokens = verified.json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}

        shop = await c.post(
            f"{V1}/shops", json={"name": "S", "slug": f"s-{uuid.uuid4().hex[:8]}"}, headers=auth
        )
        assert shop.status_code == 201, shop.text
        shop_id = shop.json()["id"]
        product = await c.post(
            f"{V1}/shops/{shop_id}/products",
            json=ProductInFactory.build().model_dump(),
            headers=auth,
        )
        assert product.status_code == 201, product.text
        address = {
            "name": "Grace Hopper",
            "line1": "77 Mulberry Secretstreet",
            "line2": "Flat 9",
            "city": "Arlingtonville",
            "postal_code": "ZX9 8YW",
            "country": "US",
            "phone": "+1 202 555 0147",
        }
        order = await c.post(
            f"{V1}/shops/{shop_id}/orders",
            json={
                "lines": [{"product_id": product.json()["id"], "quantity": 1}],
                "shipping_address": address,
            },
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert order.status_code == 201, order.text

    text = buffer.getvalue()
    records = lines(buffer)
    assert records, "nothing was logged"
    forbidden = [
        email,
        email.lower(),
        email.split("@")[0].lower(),
        password,
        pair["access_token"],
        pair.get("refresh_token") or "no-refresh-token",
        tokens["access_token"],
        mfa_token,
        secret,
        code,
        confirm_code,
        *recovery_codes,
        *(v for k, v in address.items() if k != "country"),
    ]
    for value in forbidden:
        assert value not in text, f"logged: {value[:12]}..."
        assert value.lower() not in text.lower(), f"logged: {value[:12]}..."

    access = [r for r in records if r.get("logger") == "storefront.access"]
    assert len(access) >= 10
    for record in access:
        assert {"route", "status", "duration_ms", "method", "request_id", "trace_id"} <= set(
            record
        ), record
        assert record["route"].startswith(("/api/v1/", "<unmatched>")), record
    placed = [r for r in access if r["route"] == "/api/v1/shops/{shop_id}/orders"]
    assert placed
    assert placed[0]["status"] == 201
    assert placed[0]["user_id"]
    assert len(placed[0]["trace_id"]) == 32

    # every line written inside a request carries its request and trace ids
    in_request = [r for r in records if r.get("request_id")]
    assert all(len(r.get("trace_id", "")) == 32 for r in in_request), [
        r for r in in_request if not r.get("trace_id")
    ][:3]


async def test_a_crash_is_logged_with_its_ids_and_the_body_names_them(
    logged: tuple[FastAPI, io.StringIO],
) -> None:
    app, buffer = logged

    async def boom() -> None:
        raise RuntimeError("exploded while handling secret=hunter2 for bob@example.com")

    app.add_api_route("/__test/boom", boom)
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/__test/boom")
    assert r.status_code == 500
    body = r.json()
    assert len(body["trace_id"]) == 32
    text = buffer.getvalue()
    assert "hunter2" not in text
    assert "bob@example.com" not in text
    [crash] = [x for x in lines(buffer) if x.get("logger") == "storefront.errors"]
    assert crash["request_id"] == body["request_id"]
    assert crash["trace_id"] == body["trace_id"]
    assert "RuntimeError" in crash["exception"]
    [line] = [x for x in lines(buffer) if x.get("logger") == "storefront.access"]
    assert line["status"] == 500
    assert line["route"] == "/__test/boom"


def test_console_format_is_readable_and_redacted() -> None:
    import logging

    buffer = io.StringIO()
    configure_logging(json=False, level="INFO", stream=buffer)
    logging.getLogger("storefront.test").info(
        "signed in %s with password=%s", "carol@example.com", "swordfish"
    )
    output = buffer.getvalue()
    assert "storefront.test" in output
    assert "signed in [email]" in output
    assert "swordfish" not in output
    assert not output.lstrip().startswith("{")
