"""`storefront keys rotate` as an operator runs it, against a running app on the same database."""

from __future__ import annotations

import anyio
import httpx2
import jwt
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, V1, unique
from tests.support.servers import cli_env, run_cli


async def test_keys_rotate_signs_no_one_out(migrated_database: str) -> None:
    env = cli_env(migrated_database)
    app = create_app(make_settings(migrated_database, rate_limit_enabled=False))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            # a fresh database got its first key when the app started
            first = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
            assert len(first) == 1
            email = f"{unique('keys')}@example.com"
            reg = await client.post(
                f"{V1}/auth/register",
                json={"email": email, "password": PASSWORD, "display_name": "K"},
            )
            assert reg.status_code == 201, reg.text
            login = await client.post(
                f"{V1}/auth/login", json={"email": email, "password": PASSWORD}
            )
            old = login.json()["access_token"]
            assert jwt.get_unverified_header(old)["kid"] == first[0]

            out = await anyio.to_thread.run_sync(lambda: run_cli(["keys", "rotate"], env))
            assert "New signing key" in out
            listed = await anyio.to_thread.run_sync(lambda: run_cli(["keys", "list"], env))
            kids = listed.split()
            assert len(kids) == 2
            assert first[0] in kids

            me = await client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {old}"})
            assert me.status_code == 200, me.text

    # a process started after the rotation signs with the new key, and the old token works
    app2 = create_app(make_settings(migrated_database, rate_limit_enabled=False))
    async with LifespanManager(app2, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app2, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            login = await client.post(
                f"{V1}/auth/login", json={"email": email, "password": PASSWORD}
            )
            new = login.json()["access_token"]
            assert jwt.get_unverified_header(new)["kid"] == kids[0] != first[0]
            for token in (old, new):
                me = await client.get(
                    f"{V1}/users/me", headers={"Authorization": f"Bearer {token}"}
                )
                assert me.status_code == 200, me.text
