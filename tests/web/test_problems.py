"""Errors are RFC 9457 problems; every response carries the request id and security headers."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from storefront.web.deps import SessionDep
from tests.support.factories import PASSWORD, V1, Api
from tests.support.problems import assert_problem

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
SECRET_SQL = "SELECT secret FROM users"
# fixed (not random) ids: parametrize ids must be the same in every xdist worker
SOME_ID = "0190a6d2-1234-7000-8000-00000000abcd"
OTHER_ID = "0190a6d2-5678-7000-8000-00000000dcba"
API_CSP_DIRECTIVES = ("default-src 'none'", "frame-ancestors 'none'")


def allow_set(r: httpx2.Response) -> set[str]:
    return {m.strip() for m in r.headers["allow"].split(",") if m.strip()}


@pytest.fixture
def boom_app(app: FastAPI) -> FastAPI:
    """The app with routes that fail in ways no handler anticipates."""

    async def boom() -> None:
        raise RuntimeError(SECRET_SQL)

    async def bad_sql(session: SessionDep) -> None:
        await session.execute(text("SELECT secret_column FROM no_such_table_here"))

    app.add_api_route("/boom", boom, methods=["GET", "POST"], include_in_schema=False)
    app.add_api_route("/boom/sql", bad_sql, include_in_schema=False)
    return app


# --- 404 / 405 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", f"{V1}/nope", "/api/v2/nothing-here", f"{V1}/users/me/nothing-here"]
)
async def test_unknown_route_is_a_problem_404(client: httpx2.AsyncClient, path: str) -> None:
    r = await client.get(path)

    body = assert_problem(r, 404, slug="not-found", instance=path)
    assert body["title"] == "Not Found"
    assert path in body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_unknown_route_404_for_any_method(client: httpx2.AsyncClient) -> None:
    r = await client.post("/definitely/not/here", json={"password": PASSWORD})
    assert_problem(r, 404, slug="not-found")
    assert PASSWORD not in r.text


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("DELETE", "/livez", {"GET"}),
        ("POST", "/readyz", {"GET"}),
        ("GET", f"{V1}/auth/login", {"POST"}),
        ("PUT", f"{V1}/auth/register", {"POST"}),
        ("PUT", f"{V1}/users/me", {"GET", "PATCH"}),
        ("POST", f"{V1}/users/me", {"GET", "PATCH"}),
        ("POST", f"{V1}/shops/{SOME_ID}/members/{OTHER_ID}", {"PUT", "DELETE"}),
        ("PATCH", f"{V1}/shops/{SOME_ID}", {"GET"}),
        ("DELETE", "/openapi.json", {"GET"}),
    ],
)
async def test_wrong_method_is_a_problem_405_with_every_allowed_method(
    client: httpx2.AsyncClient, method: str, path: str, expected: set[str]
) -> None:
    r = await client.request(method, path)

    body = assert_problem(r, 405, slug="method-not-allowed")
    assert body["title"] == "Method Not Allowed"
    assert method in body["detail"]
    allowed = allow_set(r)
    assert expected <= allowed, r.headers["allow"]
    assert method not in allowed
    # and each advertised method is really served there (not 405)
    for advertised in expected:
        again = await client.request(advertised, path)
        assert again.status_code != 405, (advertised, again.text)


# --- 422 ----------------------------------------------------------------------------------


async def test_validation_error_lists_each_field_without_echoing_input(
    client: httpx2.AsyncClient,
) -> None:
    weak = "hunter2!"  # too short
    r = await client.post(
        f"{V1}/auth/register",
        json={"email": "not-an-email", "password": weak, "display_name": "", "is_admin": True},
    )

    body = assert_problem(r, 422, slug="validation-error")
    assert body["title"] == "Request validation failed"
    assert isinstance(body["errors"], list)
    for err in body["errors"]:
        assert set(err) == {"loc", "msg", "type"}, err
        assert isinstance(err["loc"], list)
        assert isinstance(err["msg"], str)
        assert isinstance(err["type"], str)
    by_field = {tuple(e["loc"]): e["type"] for e in body["errors"]}
    assert by_field == {
        ("body", "email"): "value_error",
        ("body", "password"): "string_too_short",
        ("body", "display_name"): "string_too_short",
        ("body", "is_admin"): "extra_forbidden",
    }
    assert str(len(body["errors"])) in body["detail"]
    assert weak not in r.text
    assert "not-an-email" not in r.text
    assert '"input"' not in r.text
    assert body["request_id"] == r.headers["x-request-id"]


async def test_a_valid_password_is_not_echoed_when_another_field_fails(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.post(
        f"{V1}/auth/register", json={"email": "bad", "password": PASSWORD, "display_name": "A"}
    )
    assert_problem(r, 422, slug="validation-error")
    assert PASSWORD not in r.text


async def test_an_oversized_password_is_not_echoed(client: httpx2.AsyncClient) -> None:
    long_secret = "s3cret-" * 30
    r = await client.post(
        f"{V1}/auth/login", json={"email": "someone@example.com", "password": long_secret}
    )
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "password"]]
    assert "s3cret-" not in r.text


async def test_an_unknown_field_holding_a_secret_is_not_echoed(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.post(
        f"{V1}/auth/login",
        json={"email": "a@example.com", "password": "whatever-pw", "new_password": PASSWORD},
    )
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "new_password"]]
    assert PASSWORD not in r.text


async def test_malformed_json_is_a_422_problem_without_the_body(
    client: httpx2.AsyncClient,
) -> None:
    raw = b'{"email": "a@example.com", "password": "' + PASSWORD.encode() + b'", '
    r = await client.post(
        f"{V1}/auth/login", content=raw, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["type"] for e in body["errors"]] == ["json_invalid"]
    assert PASSWORD not in r.text


async def test_form_validation_does_not_echo_the_password(client: httpx2.AsyncClient) -> None:
    r = await client.post(
        f"{V1}/auth/token",
        data={"grant_type": "implicit", "username": "a@example.com", "password": PASSWORD},
    )
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "grant_type"]]
    assert PASSWORD not in r.text


async def test_path_parameter_validation_is_a_422_problem(client: httpx2.AsyncClient) -> None:
    r = await client.get(f"{V1}/shops/not-a-uuid")
    body = assert_problem(r, 422, slug="validation-error")
    assert body["errors"] == [
        {"loc": ["path", "shop_id"], "msg": body["errors"][0]["msg"], "type": "uuid_parsing"}
    ]
    assert "not-a-uuid" not in r.text.replace(r.request.url.path, "")


# --- domain errors ------------------------------------------------------------------------


async def test_domain_errors_are_problems_with_their_own_type(api: Api) -> None:
    user = await api.user()
    shop = await api.shop(user)

    not_found = await api.client.get(f"{V1}/shops/{uuid.uuid4()}")
    conflict = await api.client.post(
        f"{V1}/shops", json={"name": "Again", "slug": shop["slug"]}, headers=user.auth
    )
    unauthenticated = await api.client.get(f"{V1}/users/me")
    stranger = await api.user()
    forbidden = await api.client.put(
        f"{V1}/shops/{shop['id']}/members/{stranger.id}",
        json={"role": "owner"},
        headers=stranger.auth,
    )

    assert assert_problem(not_found, 404, slug="not-found")["title"] == "Not found"
    assert assert_problem(conflict, 409, slug="conflict")["title"] == "Conflict"
    assert assert_problem(unauthenticated, 401, slug="unauthenticated")["title"] == (
        "Authentication required"
    )
    assert assert_problem(forbidden, 403, slug="forbidden")["title"] == "Forbidden"


# --- 500 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/boom"), ("POST", "/boom"), ("GET", "/boom/sql")]
)
async def test_an_unhandled_error_is_a_bare_500_problem(
    boom_app: FastAPI,
    client: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    with caplog.at_level(logging.ERROR, logger="storefront.errors"):
        r = await client.request(method, path, headers={"X-Request-ID": "boom-request-0001"})

    body = assert_problem(r, 500, slug="internal-error", instance=path)
    assert body["title"] == "Internal Server Error"
    assert set(body) == {"type", "title", "status", "detail", "instance", "request_id", "trace_id"}
    for leak in (
        "Traceback",
        'File "',
        "RuntimeError",
        "SELECT",
        "secret",
        "no_such_table",
        "sqlalchemy",
        "OperationalError",
        "ProgrammingError",
        "Undefined",
        ".py",
    ):
        assert leak not in r.text, leak
    assert body["request_id"] == "boom-request-0001"
    # the failure is logged server-side, with the exception
    logged = [rec for rec in caplog.records if rec.name == "storefront.errors"]
    assert logged, caplog.text
    assert logged[-1].exc_info is not None


async def test_a_500_still_carries_the_request_id_and_security_headers(
    boom_app: FastAPI, client: httpx2.AsyncClient
) -> None:
    sent = await client.get("/boom", headers={"X-Request-ID": "trace-me-500-abc"})
    minted = await client.get("/boom")

    assert sent.status_code == minted.status_code == 500
    assert sent.headers["x-request-id"] == "trace-me-500-abc"
    assert GENERATED_ID.match(minted.headers["x-request-id"])
    assert minted.json()["request_id"] == minted.headers["x-request-id"]
    for r in (sent, minted):
        assert_security_headers(r, api_route=True)


async def test_the_app_keeps_serving_after_a_500(
    boom_app: FastAPI, client: httpx2.AsyncClient
) -> None:
    assert (await client.get("/boom/sql")).status_code == 500
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text


# --- request ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    [
        "abcdefgh",
        "0f5c1a2e-6d3b-4b7a-9c1e-2f3a4b5c6d7e",
        "req.123:456_abc-XYZ",
        "a" * 128,
    ],
    ids=["8-chars", "uuid", "punctuation", "128-chars"],
)
async def test_a_valid_request_id_is_echoed(client: httpx2.AsyncClient, request_id: str) -> None:
    ok = await client.get("/livez", headers={"X-Request-ID": request_id})
    problem = await client.get("/nope", headers={"X-Request-ID": request_id})

    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == request_id
    assert problem.headers["x-request-id"] == request_id
    assert problem.json()["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "short",
        "a" * 129,
        "has spaces in it",
        "slash/in/the/id",
        "<script>alert(1)</script>",
        "semi;colon;id;here",
        'quote"id"value',
    ],
    ids=["empty", "short", "129-chars", "spaces", "slashes", "html", "semicolons", "quotes"],
)
async def test_an_invalid_request_id_is_replaced(
    client: httpx2.AsyncClient, request_id: str
) -> None:
    r = await client.get("/nope", headers={"X-Request-ID": request_id})

    assert r.status_code == 404
    generated = r.headers["x-request-id"]
    assert generated != request_id
    assert GENERATED_ID.match(generated), generated
    assert r.json()["request_id"] == generated
    if request_id:
        assert request_id not in r.text


async def test_a_request_id_is_generated_when_absent_and_unique(
    client: httpx2.AsyncClient,
) -> None:
    ids = set()
    for path in ("/livez", "/livez", "/nope", f"{V1}/users/me"):
        r = await client.get(path)
        assert GENERATED_ID.match(r.headers["x-request-id"]), r.headers
        ids.add(r.headers["x-request-id"])
    assert len(ids) == 4


async def test_only_one_request_id_header_is_returned(client: httpx2.AsyncClient) -> None:
    r = await client.get("/livez", headers={"X-Request-ID": "client-id-0001"})
    assert r.headers.get_list("x-request-id") == ["client-id-0001"]


# --- security headers ---------------------------------------------------------------------


def assert_security_headers(r: httpx2.Response, *, api_route: bool) -> None:
    hsts = r.headers["strict-transport-security"]
    match = re.match(r"^max-age=(\d+)", hsts)
    assert match, hsts
    assert int(match.group(1)) >= 31536000
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    if api_route:
        for directive in API_CSP_DIRECTIVES:
            assert directive in csp, csp
        assert "unsafe" not in csp
    assert "server" not in r.headers
    assert r.headers.get_list("strict-transport-security") == [hsts]


EVERY_KIND: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/livez", None, 200),
    ("GET", "/readyz", None, 200),
    ("GET", "/healthz", None, 200),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/nope", None, 404),
    ("DELETE", "/livez", None, 405),
    ("GET", f"{V1}/users/me", None, 401),
    ("GET", f"{V1}/shops/not-a-uuid", None, 422),
    ("GET", f"{V1}/shops/{SOME_ID}", None, 404),
    ("POST", f"{V1}/auth/login", {"email": "a@example.com", "password": "x-y-z-w"}, 401),
    ("GET", "/boom", None, 500),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    EVERY_KIND,
    ids=[f"{m} {p.split('/')[-1] or p} {s}" for m, p, _b, s in EVERY_KIND],
)
async def test_every_api_response_has_the_security_headers(
    boom_app: FastAPI,
    client: httpx2.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    r = await client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert_security_headers(r, api_route=True)
    assert GENERATED_ID.match(r.headers["x-request-id"])


async def test_successful_api_writes_have_the_security_headers(api: Api) -> None:
    user = await api.user()
    created = await api.client.post(
        f"{V1}/shops", json={"name": "Headers", "slug": "headers-shop"}, headers=user.auth
    )
    me = await api.client.get(f"{V1}/users/me", headers=user.auth)
    assert created.status_code == 201, created.text
    assert me.status_code == 200, me.text
    for r in (created, me):
        assert_security_headers(r, api_route=True)
    assert me.headers["cache-control"] == "no-store"


async def test_docs_pages_have_the_security_headers_too(client: httpx2.AsyncClient) -> None:
    for path in ("/docs", "/docs/oauth2-redirect", "/static/docs/swagger-ui.css"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert_security_headers(r, api_route=False)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'none'" in csp
        assert "http:" not in csp
        assert "https:" not in csp
