"""``storefront keys ...``: manage the access-token signing keys (shared via the database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer
from rich.console import Console

from storefront.platform.db import create_engine, create_sessionmaker
from storefront.platform.security.keys import KeyStore
from storefront.platform.security.kit import KEY_PURPOSE
from storefront.platform.security.secretbox import SecretBox
from storefront.settings import get_settings

keys_app = typer.Typer(help="Access-token signing keys (EdDSA, shared by every process).")
console = Console()


@asynccontextmanager
async def _key_store() -> AsyncIterator[KeyStore]:
    settings = get_settings()
    engine = create_engine(settings.database_url)
    try:
        auth = settings.auth
        yield KeyStore(
            create_sessionmaker(engine),
            SecretBox(auth.jwt_secret.get_secret_value(), purpose=KEY_PURPOSE),
            keep_seconds=auth.access_token_ttl_seconds + 120,
        )
    finally:
        await engine.dispose()


@keys_app.command("rotate")
def rotate() -> None:
    """Add a new signing key. Old keys keep verifying until their tokens have expired."""

    async def main() -> None:
        async with _key_store() as store:
            key = await store.rotate()
            kids = [k["kid"] for k in store.ring.jwks()["keys"]]
        console.print(f"New signing key [bold]{key.kid}[/bold]; keys now published: {kids}")
        console.print("Running processes start signing with it within a minute.")

    asyncio.run(main())


@keys_app.command("list")
def list_keys() -> None:
    """Show the key ids in the JWK Set, newest (the signing key) first."""

    async def main() -> None:
        async with _key_store() as store:
            await store.load(create_if_empty=False)
            for jwk in store.ring.jwks()["keys"]:
                console.print(jwk["kid"])

    asyncio.run(main())
