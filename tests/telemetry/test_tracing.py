"""OpenTelemetry: one server span per request with SQL and Redis children; OTLP export."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from storefront.app import create_app
from storefront.telemetry.tracing import create_tracer_provider
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1, Api

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _no_ambient_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


async def _traced_app(settings_overrides: dict[str, Any], database_url: str) -> FastAPI:
    settings = make_settings(
        database_url,
        observability={"tracing_enabled": True, "trace_sample_ratio": 1.0},
        **settings_overrides,
    )
    return create_app(settings)


@pytest.fixture
async def traced(database_url: str) -> AsyncIterator[tuple[FastAPI, InMemorySpanExporter]]:
    app = await _traced_app({}, database_url)
    exporter = InMemorySpanExporter()
    app.state.observability.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app, exporter
        await _empty_tables(app.state.resources)


def _client(app: FastAPI) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url="http://testserver")


def _trace_of(spans: tuple[ReadableSpan, ...], server: ReadableSpan) -> list[ReadableSpan]:
    assert server.context is not None
    return [
        s for s in spans if s.context is not None and s.context.trace_id == server.context.trace_id
    ]


async def test_one_request_is_one_server_span_with_sql_children(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    async with _client(app) as client:
        user = await Api(client).user()
        exporter.clear()
        r = await client.get(f"{V1}/users/me", headers=user.auth)
        assert r.status_code == 200
        for probe in ("/livez", "/readyz", "/healthz", "/metrics"):
            assert (await client.get(probe)).status_code == 200

    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /api/v1/users/me"]  # probes are not traced
    [server] = servers
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/api/v1/users/me"
    assert server.attributes["http.response.status_code"] == 200
    assert server.parent is None
    family = _trace_of(spans, server)
    children = [s for s in family if s is not server]
    sql = [s for s in children if (s.attributes or {}).get("db.system") in ("sqlite", "postgresql")]
    assert sql, [s.name for s in children]
    assert server.context is not None
    for span in sql:
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert span.kind is SpanKind.CLIENT
    statements = [str((s.attributes or {}).get("db.statement", "")).upper() for s in sql]
    assert any(st.startswith("SELECT") for st in statements), statements
    # no per-message ASGI receive/send spans
    assert not [s for s in spans if "receive" in s.name or "send" in s.name]


async def test_the_server_span_continues_the_callers_trace(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with _client(app) as client:
        r = await client.get(f"{V1}/users/me", headers={"traceparent": parent})
    assert r.status_code == 401
    assert r.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert server.name == "GET /api/v1/users/me"


async def test_redis_commands_are_child_spans(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = await _traced_app({"redis_url": redis_url, "redis_prefix": redis_prefix}, sqlite_url)
    exporter = InMemorySpanExporter()
    app.state.observability.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        _client(app) as client,
    ):
        try:
            user = await Api(client).user()
            exporter.clear()
            assert (await client.get(f"{V1}/users/me", headers=user.auth)).status_code == 200
        finally:
            await _empty_tables(app.state.resources)
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    redis = [
        s for s in _trace_of(spans, server) if (s.attributes or {}).get("db.system") == "redis"
    ]
    assert redis, [s.name for s in spans]
    assert server.context is not None
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in redis)


def test_the_ratio_sampler_decides_per_trace_and_follows_the_parent() -> None:
    none = create_tracer_provider(enabled=True, sample_ratio=0.0, version="t", environment="test")
    every = create_tracer_provider(enabled=True, sample_ratio=1.0, version="t", environment="test")
    off = create_tracer_provider(enabled=False, sample_ratio=1.0, version="t", environment="test")
    assert "TraceIdRatioBased{0.0}" in none.sampler.get_description()
    assert none.sampler.get_description().startswith("ParentBased")
    with none.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()
        assert span.get_span_context().trace_id != 0  # still correlatable in logs
    with every.get_tracer("t").start_as_current_span("x") as span:
        assert span.is_recording()
    with off.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()


# --- OTLP/HTTP to a local receiver ------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_are_exported_as_otlp_http_to_the_configured_endpoint(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    endpoint, received = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "storefront-otlp-test")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    # tracing is not switched on in the settings: the endpoint alone turns it on
    app = create_app(make_settings(sqlite_url))
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        _client(app) as client,
    ):
        r = await client.get(f"{V1}/users/me")
        assert r.status_code == 401
        trace_id = r.json()["trace_id"]
    # the lifespan's shutdown flushed the batch processor

    assert received, "nothing arrived at the OTLP endpoint"
    spans = []
    for path, content_type, body in received:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attributes["service.name"] == "storefront-otlp-test"
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    server = [s for s in spans if s.name == "GET /api/v1/users/me"]
    assert len(server) == 1
    assert server[0].trace_id.hex() == trace_id
    assert server[0].kind == 2  # SPAN_KIND_SERVER
    children = [s for s in spans if s.parent_span_id == server[0].span_id]
    assert all(s.trace_id == server[0].trace_id for s in children)


async def test_a_job_enqueued_by_a_request_continues_its_trace_and_is_measured(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    from prometheus_client import REGISTRY

    app, exporter = traced
    job = "orders.send_confirmation"

    def runs() -> float:
        return sum(
            REGISTRY.get_sample_value(
                "storefront_job_duration_seconds_count", {"job": job, "outcome": outcome}
            )
            or 0.0
            for outcome in ("success", "failure")
        )

    before = runs()
    async with _client(app) as client:
        api = Api(client)
        owner, customer = await api.user(), await api.user()
        shop = await api.shop(owner)
        product = await api.product(owner, shop)
        exporter.clear()
        await api.order(customer, shop, (product, 1))
        for _ in range(100):
            if any(s.name == f"job {job}" for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.05)
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    jobs = [s for s in spans if s.name == f"job {job}"]
    assert jobs, [s.name for s in spans]
    assert server.context is not None
    for span in jobs:
        assert span.kind is SpanKind.CONSUMER
        assert span.context is not None
        assert span.context.trace_id == server.context.trace_id  # the request's trace
    assert runs() >= before + 1
