"""Sentry: an unhandled error reaches the DSN's endpoint with context and without PII."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
import httpx2
import pytest
import sentry_sdk
from asgi_lifespan import LifespanManager

from storefront import __version__
from storefront.app import create_app
from storefront.telemetry import sentry
from tests.conftest import _empty_tables, make_settings


class _Ingest(BaseHTTPRequestHandler):
    envelopes: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # the SDK compresses with brotli when it is importable (it is: response
        # compression uses it), with gzip otherwise, as Sentry's ingest accepts both
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            body = brotli.decompress(body)
        self.envelopes.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    envelopes: list[tuple[str, bytes]] = []
    handler = type("Ingest", (_Ingest,), {"envelopes": envelopes})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port, envelopes
    finally:
        sentry_sdk.init()  # no DSN: the SDK is off again for the rest of the process
        server.shutdown()
        server.server_close()


def _events(envelopes: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    events = []
    for _path, body in envelopes:
        parts = body.split(b"\n")
        for i in range(1, len(parts) - 1, 2):
            header = json.loads(parts[i])
            if header.get("type") == "event":
                events.append(json.loads(parts[i + 1]))
    return events


async def test_an_unhandled_error_is_reported_with_context_and_scrubbed(
    sqlite_url: str, ingest: tuple[int, list[tuple[str, bytes]]]
) -> None:
    port, envelopes = ingest
    settings = make_settings(
        sqlite_url,
        observability={
            "sentry_dsn": f"http://abc123public@127.0.0.1:{port}/42",
            "tracing_enabled": True,
            "trace_sample_ratio": 1.0,
        },
    )
    app = create_app(settings)
    email = "victim.person@example.com"

    async def boom() -> None:
        raise RuntimeError(f"payment failed for {email} password=hunter2-secret")

    app.add_api_route("/__test/boom", boom, methods=["POST"])
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
                r = await c.post(
                    f"/__test/boom?email={email}",
                    json={"email": email, "password": "hunter2-secret"},
                    headers={
                        "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
                        "Cookie": "session=very-secret-cookie",
                        "User-Agent": "pytest-agent",
                        "X-Request-ID": "req-sentry-0001",
                    },
                )
            assert r.status_code == 500
            problem = r.json()
            sentry_sdk.flush(timeout=5)
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)

    assert envelopes, "nothing reached the Sentry endpoint"
    assert all(path == "/api/42/envelope/" for path, _ in envelopes)
    [event] = _events(envelopes)
    raw = b"".join(body for _, body in envelopes).decode()
    for secret in (email, "hunter2-secret", "very-secret-cookie", "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in raw, secret

    assert event["release"] == f"storefront@{__version__}"
    assert event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    request = event["request"]
    assert request["method"] == "POST"
    assert request["url"] == "http://testserver/__test/boom"  # no query string
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["user-agent"] == "pytest-agent"
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "data" not in request  # bodies are never sent
    assert event["tags"]["request_id"] == "req-sentry-0001" == problem["request_id"]
    assert event["contexts"]["trace"]["trace_id"] == problem["trace_id"]
    assert event.get("user") in (None, {})  # no IP, no user PII


async def test_without_a_dsn_nothing_is_sent(
    sqlite_url: str, ingest: tuple[int, list[tuple[str, bytes]]]
) -> None:
    _port, envelopes = ingest
    app = create_app(make_settings(sqlite_url))

    async def boom() -> None:
        raise RuntimeError("nobody hears this")

    app.add_api_route("/__test/boom", boom)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
                assert (await c.get("/__test/boom")).status_code == 500
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
    assert not sentry.enabled()
    assert envelopes == []
