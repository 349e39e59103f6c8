"""Content negotiation shared by every route: MessagePack bodies where JSON is taken, v2
documents in MessagePack, and response compression by Accept-Encoding (zstd, br, gzip) for
whole bodies of a minimum size, never for streams (decision 0142)."""

from __future__ import annotations

import gzip
import uuid

import brotli
import msgpack
import pytest
import zstandard

from tests.support.factories import Api, shop_with_staff
from tests.support.problems import assert_problem

V2 = "/api/v2"
DECODERS = {
    "zstd": lambda b: zstandard.ZstdDecompressor().decompress(b, max_output_size=10_000_000),
    "br": brotli.decompress,
    "gzip": gzip.decompress,
}


async def raw_get(api: Api, url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    """The response's headers and its body as sent (not decoded by the client)."""
    async with api.client.stream("GET", url, headers=headers) as r:
        body = b"".join([chunk async for chunk in r.aiter_raw()])
        return dict(r.headers), body


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
async def test_each_coding_compresses_a_large_body(api: Api, coding: str) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(6):
        await api.product(staff, shop)
    url = f"{V2}/shops/{shop['id']}/products"
    plain_headers, plain = await raw_get(api, url, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain_headers
    assert len(plain) >= 1024

    headers, body = await raw_get(api, url, **{"Accept-Encoding": coding})
    assert headers["content-encoding"] == coding
    assert "Accept-Encoding" in headers["vary"]
    assert "Accept" in headers["vary"]
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert DECODERS[coding](body) == plain


async def test_q_values_choose_and_small_bodies_stay_plain(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(6):
        await api.product(staff, shop)
    url = f"{V2}/shops/{shop['id']}/products"
    headers, _ = await raw_get(api, url, **{"Accept-Encoding": "gzip;q=0.5, br;q=0.9, zstd;q=0"})
    assert headers["content-encoding"] == "br"
    headers, _ = await raw_get(api, url, **{"Accept-Encoding": "gzip, br, zstd"})
    assert headers["content-encoding"] == "zstd"  # equal q: the server's preference
    headers, _ = await raw_get(api, url, **{"Accept-Encoding": "deflate"})
    assert "content-encoding" not in headers
    # a shop is a small document: never compressed
    headers, _ = await raw_get(api, f"{V2}/shops/{shop['id']}", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in headers


async def test_streamed_exports_are_not_compressed(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=50)
    customer = await api.user()
    for _ in range(8):
        await api.order(customer, shop, (product, 1))
    headers, body = await raw_get(
        api,
        f"/api/v1/shops/{shop['id']}/orders",
        Accept="application/x-ndjson",
        **{"Accept-Encoding": "gzip, br, zstd"},
        **staff.auth,
    )
    assert "content-encoding" not in headers
    assert len(body.splitlines()) == 8


async def test_v2_documents_in_msgpack_and_bodies_in_msgpack(api: Api) -> None:
    owner = await api.user()
    body = msgpack.packb({"name": "Packed", "slug": f"packed-{uuid.uuid4().hex[:8]}"})
    r = await api.client.post(
        f"{V2}/shops",
        content=body,
        headers={
            **owner.auth,
            "Content-Type": "application/msgpack",
            "Accept": "application/msgpack",
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/msgpack"
    shop = msgpack.unpackb(r.content)
    assert shop["name"] == "Packed"
    assert shop["_links"]["self"]["href"] == f"{V2}/shops/{shop['id']}"
    # the same document as JSON (the owner's: a shop's links depend on the caller's role)
    r = await api.client.get(
        shop["_links"]["self"]["href"], headers={"Accept": "application/json", **owner.auth}
    )
    assert r.json() == shop

    # v1 takes msgpack bodies too, and validates them as JSON
    r = await api.client.post(
        "/api/v1/shops",
        content=msgpack.packb({"name": "x", "slug": "NOT A SLUG"}),
        headers={**owner.auth, "Content-Type": "application/msgpack"},
    )
    assert_problem(r, 422)
    # not msgpack, or not representable as JSON: 400
    for bad in (b"\xc1", msgpack.packb({"name": b"\x00bytes"}), msgpack.packb(1) + b"\x01"):
        r = await api.client.post(
            "/api/v1/shops",
            content=bad,
            headers={**owner.auth, "Content-Type": "application/msgpack"},
        )
        assert_problem(r, 400)


async def test_v2_order_collections_stream_as_ndjson_and_csv(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=50)
    customer = await api.user()
    for _ in range(3):
        await api.order(customer, shop, (product, 1))
    url = f"{V2}/shops/{shop['id']}/orders"

    r = await api.client.get(url, headers={**staff.auth, "Accept": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert "Accept" in r.headers["vary"]
    assert len(r.text.splitlines()) == 3
    r = await api.client.get(url, headers={**staff.auth, "Accept": "text/csv;q=0.9, */*;q=0.1"})
    assert r.headers["content-type"].startswith("text/csv")
    assert len(r.text.strip().splitlines()) == 1 + 3  # a header row, one row per line
    # a customer's stream has their own orders only
    other = await api.user()
    r = await api.client.get(url, headers={**other.auth, "Accept": "application/x-ndjson"})
    assert r.text == ""

    body = assert_problem(
        await api.client.get(url, headers={**staff.auth, "Accept": "image/png"}), 406
    )
    assert "text/csv" in body["available"]
    assert "application/hal+json" in body["available"]
