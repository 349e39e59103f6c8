"""API v2 answers whose links depend on the caller name Authorization in Vary, the public
copy too: a shared cache that keeps an anonymous copy must not answer a shop's staff (or an
administrator) with it, which would hide the actions they may take."""

from __future__ import annotations

import httpx2

from tests.support.factories import Api, shop_with_staff

V2 = "/api/v2"


def vary(response: httpx2.Response) -> set[str]:
    return {f.strip().lower() for f in response.headers.get("vary", "").split(",") if f.strip()}


async def test_caller_dependent_reads_vary_by_authorization(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    shop_url = f"{V2}/shops/{shop['id']}"
    for url in (
        V2,
        shop_url,
        f"{shop_url}/products",
        f"{shop_url}/products/{product['id']}",
    ):
        public = await api.client.get(url)
        assert public.status_code == 200, public.text
        assert {"accept", "authorization"} <= vary(public), (url, public.headers.get("vary"))
        assert "no-store" not in public.headers.get("cache-control", "")
        personal = await api.client.get(url, headers=staff.auth)
        assert personal.status_code == 200, personal.text
        assert {"accept", "authorization"} <= vary(personal), (url, personal.headers.get("vary"))
        assert personal.headers["cache-control"] == "no-store"
        # the copies differ: what the staff may do is only in theirs
        assert public.json()["_links"] != personal.json()["_links"] or url == V2


async def test_one_vary_field_each_time(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    r = await api.client.get(f"{V2}/shops/{shop['id']}", headers=owner.auth)
    fields = [f.strip().lower() for f in r.headers["vary"].split(",")]
    assert len(fields) == len(set(fields)), r.headers["vary"]


async def test_a_product_revalidates_per_copy(api: Api) -> None:
    """If-None-Match gives 304 as on v1; the staff's copy and the public one have their own
    tags, so a member never revalidates a public copy (without their actions) into theirs."""
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V2}/shops/{shop['id']}/products/{product['id']}"

    public = await api.client.get(url)
    mine = await api.client.get(url, headers=staff.auth)
    assert public.headers["etag"] != mine.headers["etag"]
    assert "edit" in mine.json()["_links"]
    assert "edit" not in public.json()["_links"]

    again = await api.client.get(url, headers={"If-None-Match": public.headers["etag"]})
    assert again.status_code == 304, again.text
    assert again.content == b""
    assert again.headers["etag"] == public.headers["etag"]
    assert "authorization" in vary(again)

    revalidated = await api.client.get(
        url, headers={**staff.auth, "If-None-Match": mine.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["cache-control"] == "no-store"
    other = await api.client.get(
        url, headers={**staff.auth, "If-None-Match": public.headers["etag"]}
    )
    assert other.status_code == 200
    assert "edit" in other.json()["_links"]

    # either copy's tag is a valid If-Match: the state is the same
    for stock, headers in ((7, {}), (8, staff.auth)):
        tag = (await api.client.get(url, headers=headers)).headers["etag"]
        r = await api.client.patch(
            url, json={"stock": stock}, headers={**staff.auth, "If-Match": tag}
        )
        assert r.status_code == 200, r.text
        assert r.json()["stock"] == stock
        assert (await api.client.get(url, headers={"If-None-Match": tag})).status_code == 200


async def test_a_refused_accept_says_vary_accept(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    for accept in ("text/html", "garbage;;;q=x"):
        for url in (V2, f"{V2}/shops/{shop['id']}", f"{V2}/users/me"):
            r = await api.client.get(url, headers={**owner.auth, "Accept": accept})
            assert r.status_code == 406, (url, accept, r.text)
            assert "accept" in vary(r), (url, accept, r.headers.get("vary"))
