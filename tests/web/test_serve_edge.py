"""`storefront serve` at the edge, as a client on the network sees it:
bounded request heads, and production metrics on their own port, not the public one."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.servers import cli_env, free_port, run_cli, serve, stop, wait_ready

GOOD_SECRET = "7c1f0e9a4b2d8c6e5f3a1b0d9e8c7f6a5b4c3d2e"
MASTER_KEY = "q3Jx9b1C4vZ0mT6yP2sW8kN5hL7dF1gA3eR0uI9oY2c="
BLIND_KEY = "Zm9yLXRlc3RzLW9ubHktYmxpbmQtaW5kZXgta2V5IS0="


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'edge.db'}"
    run_cli(["migrate"], cli_env(url))
    return url


@pytest.fixture
def served(database: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc, base = serve(cli_env(database))
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        stop(proc, signal.SIGINT, within=20)


def _raw(base: str, head: bytes, *, timeout: float = 20) -> bytes:
    """Send a raw request head; whatever the server answers before it closes (b"" if it cut
    the connection while the head was still being sent)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_request_heads_are_bounded_and_normal_requests_still_work(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    base, proc = served
    # an ordinary request, with a realistic set of headers (a long bearer token, cookies)
    ordinary = httpx2.get(
        f"{base}/livez",
        headers={"Authorization": "Bearer " + "t" * 2000, "Cookie": "a=" + "c" * 3000},
    )
    assert ordinary.status_code == 200
    # one header larger than the bound (32 KiB by default): refused before the app
    big = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    assert _status(_raw(base, big)) in (400, 431)
    # 8 MB of header: refused or cut off long before it is all buffered
    huge = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8 * 1024 * 1024 + b"\r\n\r\n"
    assert _status(_raw(base, huge)) in (0, 400, 431)
    # many small headers (well under the byte bound): 431 problem from the app
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    answer = _raw(base, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + many + b"\r\n")
    assert _status(answer) == 431, answer[:300]
    assert b"application/problem+json" in answer
    # and the server is still there for everyone else
    assert httpx2.get(f"{base}/livez").status_code == 200
    assert proc.poll() is None


def test_production_serves_metrics_on_their_own_port_only(database: str) -> None:
    metrics_port = free_port()
    env = cli_env(
        database,
        STOREFRONT_ENVIRONMENT="production",
        STOREFRONT_DEPLOYMENT_NAME="edge-test",
        STOREFRONT_AUTH__JWT_SECRET=GOOD_SECRET,
        STOREFRONT_PRIVACY__MASTER_KEYS=f"v1:{MASTER_KEY}",
        STOREFRONT_PRIVACY__BLIND_INDEX_KEY=BLIND_KEY,
        STOREFRONT_OBSERVABILITY__METRICS_PORT=str(metrics_port),
    )
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        assert httpx2.get(f"{base}/livez").status_code == 200
        public = httpx2.get(f"{base}/metrics")
        assert public.status_code == 404
        assert "storefront_" not in public.text
        assert httpx2.get(f"{base}/docs").status_code == 404
        assert httpx2.get(f"{base}/openapi.json").status_code == 404
        scrape = httpx2.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scrape.status_code == 200
        # the API process's own series: its requests, its readiness
        assert 'storefront_http_requests_total{method="GET",route="/livez"' in scrape.text
    finally:
        stop(proc, signal.SIGINT, within=20)


def test_the_metrics_port_covers_every_worker_process(database: str, tmp_path: Path) -> None:
    """With STOREFRONT_WORKERS > 1 the port is served once, by the supervisor, from the
    multiprocess directory every worker writes to: one scrape sees all of them."""
    metrics_port = free_port()
    (tmp_path / "metrics").mkdir()
    env = cli_env(
        database,
        STOREFRONT_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        STOREFRONT_OBSERVABILITY__METRICS_PORT=str(metrics_port),
    )
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        n = 40
        for _ in range(n):  # a new connection each time, so both workers answer some
            assert httpx2.get(f"{base}/livez", headers={"Connection": "close"}).status_code == 200
        assert httpx2.get(f"{base}/metrics").status_code == 404  # not on the API port
        scrape = httpx2.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        line = next(
            row
            for row in scrape.splitlines()
            if row.startswith('storefront_http_requests_total{method="GET",route="/livez"')
        )
        assert float(line.rsplit(" ", 1)[1]) >= n
        pids = {f.name.rsplit("_", 1)[-1] for f in (tmp_path / "metrics").glob("*.db")}
        assert len(pids) >= 2, pids
    finally:
        stop(proc, signal.SIGINT, within=20)


def test_a_request_head_must_arrive_in_time(database: str) -> None:
    """Slowloris: a connection that sends nothing, or its head a line at a time, is closed
    after STOREFRONT_PROTECTION__HEADER_TIMEOUT_SECONDS; a prompt client, also on a kept-alive
    connection, is unaffected."""
    proc, base = serve(cli_env(database, STOREFRONT_PROTECTION__HEADER_TIMEOUT_SECONDS="2"))
    host, port = base.removeprefix("http://").split(":")
    try:
        wait_ready(base, proc)
        # silent: closed (recv sees EOF) within the timeout, not held for ever
        with socket.create_connection((host, int(port)), timeout=15) as silent:
            started = time.monotonic()
            assert silent.recv(100) == b""
            assert 1.5 <= time.monotonic() - started < 8
        # a header line every half second: cut off although bytes keep arriving
        with socket.create_connection((host, int(port)), timeout=15) as slow:
            slow.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for i in range(30):
                    time.sleep(0.5)
                    slow.sendall(b"X-Slow-%d: v\r\n" % i)
            assert time.monotonic() - started < 8
        # prompt requests, two on one kept-alive connection with a pause between them
        with socket.create_connection((host, int(port)), timeout=15) as prompt:
            for _ in range(2):
                prompt.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while b'{"status":"ok"}' not in answer:
                    chunk = prompt.recv(65536)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
                time.sleep(1)
    finally:
        stop(proc, signal.SIGINT, within=20)


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    """Decision 0189: h11 framed such a body by Transfer-Encoding and served what followed
    the chunked body as a second request, one a proxy framing by Content-Length would have
    passed as body (request smuggling). Now: one 400 problem, then the connection closes."""
    base, proc = served
    smuggled = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    head = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
    )
    answer = _raw(base, head + body)
    assert _status(answer) == 400, answer[:300]
    assert b"application/problem+json" in answer
    assert b"ambiguous-framing" in answer
    assert b"connection: close" in answer.lower()
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the smuggled request got no answer
    # either header alone is fine, and the server is still there
    chunked = b"GET /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    assert _status(_raw(base, chunked + b"Connection: close\r\n\r\n0\r\n\r\n")) == 200
    assert httpx2.get(f"{base}/livez").status_code == 200
    assert proc.poll() is None
