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
