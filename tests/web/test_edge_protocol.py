"""`storefront serve`'s HTTP/1.1 protocol (web/edge_server.py, decision 0192), from a raw
socket: what the server itself guarantees before a request reaches the application, and
that ordinary traffic (pipelined requests, cached reads) still takes the fast way through.
test_serve_edge.py covers the same edge from a client's point of view."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Iterator

import httpx2
import pytest

from tests.support.factories import ProductInFactory, unique
from tests.support.servers import cli_env, run_cli, serve, stop, wait_ready

PASSWORD = "a-long-enough-password"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}"
    env = cli_env(url, STOREFRONT_PROTECTION__HEADER_TIMEOUT_SECONDS="3")
    run_cli(["migrate"], env)
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        yield base
    finally:
        stop(proc, signal.SIGINT, within=20)


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _problem(answer: bytes) -> tuple[int, dict[bytes, bytes], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return status, headers, json.loads(body)


def test_a_head_sent_in_pieces_is_refused_once_it_passes_the_bound(served: str) -> None:
    """The head arrives in many reads and never ends: the server counts what it received
    and refuses at the bound (32 KiB by default), instead of buffering the rest."""
    with _connect(served) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(400):  # up to 400 KiB, a KiB at a time
                sock.sendall(b"a" * 1024)
                sent += 1024
                time.sleep(0.002)
        answer = _read_all(sock)
    status, headers, problem = _problem(answer)
    assert status == 431, answer[:300]
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert len(headers[b"x-request-id"]) == 32
    assert problem["type"] == "/problems/headers-too-large"
    assert sent < 400 * 1024  # cut off long before everything was sent


def test_a_head_just_under_the_bound_is_served(served: str) -> None:
    headers = {f"X-Fill-{i}": "f" * 900 for i in range(30)}  # about 27 KiB of fields
    assert httpx2.get(f"{served}/livez", headers=headers).status_code == 200


def test_ambiguous_framing_is_refused_in_either_order(served: str) -> None:
    """Transfer-Encoding before Content-Length too: one 400 problem, the bytes after the
    chunked body never read as a request, the connection closed."""
    smuggled = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    head = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with _connect(served) as sock:
        sock.sendall(head + body)
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    status, headers, problem = _problem(answer)
    assert status == 400
    assert problem["type"] == "/problems/ambiguous-framing"
    assert headers[b"connection"] == b"close"


def test_a_request_that_is_not_http_gets_a_problem(served: str) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost x\r\n\r\n")  # no colon
        answer = _read_all(sock)
    status, headers, problem = _problem(answer)
    assert status == 400
    assert headers[b"content-type"] == b"application/problem+json"
    assert problem["type"] == "/problems/bad-request"


def test_pipelined_requests_are_answered_in_order_and_the_deadline_spares_them(
    served: str,
) -> None:
    """Three requests in one write: three answers, in order, on a connection that stays
    open past the head deadline (3 s here) while a client keeps using it."""
    request = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipelined-%d\r\n\r\n"
    with _connect(served) as sock:
        sock.sendall(b"".join(request % n for n in range(3)))
        answer = b""
        while answer.count(b'{"status":"ok"}') < 3:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        ids = [answer.index(b"pipelined-%d" % n) for n in range(3)]
        assert ids == sorted(ids)
        for _ in range(3):  # 4.5 s in all, each head prompt
            time.sleep(1.5)
            sock.sendall(request % 9)
            answer = b""
            while b'{"status":"ok"}' not in answer:
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
        # and then silent: closed after the deadline
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert 2 <= time.monotonic() - started < 10


def test_a_cached_product_is_answered_by_the_fast_path(served: str) -> None:
    """The scope this protocol builds (path, raw path, query string, lower-case header
    names) is one the cache-hit fast path matches: a warm product GET never falls through
    to routing, with or without a revalidation header."""
    c = httpx2.Client(base_url=served, timeout=30)
    email = f"{unique('edge')}@example.com"
    r = c.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "Edge"},
    )
    assert r.status_code == 201, r.text
    login = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    shop = c.post("/api/v1/shops", json={"name": "S", "slug": unique("s").lower()}, headers=auth)
    assert shop.status_code == 201, shop.text
    body = ProductInFactory.build(stock=5).model_dump()
    product = c.post(f"/api/v1/shops/{shop.json()['id']}/products", json=body, headers=auth)
    assert product.status_code == 201, product.text
    url = f"/api/v1/shops/{shop.json()['id']}/products/{product.json()['id']}"
    first = c.get(url)
    assert first.status_code == 200
    sources = [c.get(url).headers["x-cache"] for _ in range(20)]
    assert set(sources) == {"hit-l1"}, sources
    revalidated = c.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304
    assert revalidated.headers["x-cache"] == "hit-l1"
    assert revalidated.headers["x-request-id"]
    assert revalidated.headers["content-security-policy"]


def test_the_server_is_still_there(served: str) -> None:
    assert httpx2.get(f"{served}/livez").status_code == 200
