"""``storefront keys ...``: manage the access-token signing keys (shared via the database)
and the master keys that wrap personal data keys (``rotate-master``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from storefront.auth.signing_keys import KeyStore
from storefront.settings import get_settings
from storefront.vault.config import key_material
from storefront.vault.rotation import pending, rotate_master

keys_app = typer.Typer(
    help="Access-token signing keys (EdDSA, shared by every process) and personal-data master keys."
)
console = Console()


@asynccontextmanager
async def _key_store() -> AsyncIterator[KeyStore]:
    from storefront.resources import open_resources

    async with open_resources(get_settings(), role="cli") as resources:
        yield resources.security.keys


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


@keys_app.command("rotate-master")
def rotate_master_command(
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            max=10_000,
            help="Data keys per transaction (default STOREFRONT_PRIVACY__ROTATION_BATCH_SIZE)",
        ),
    ] = None,
) -> None:
    """Re-wrap every personal-data key under the current master key (the first of
    STOREFRONT_PRIVACY__MASTER_KEYS), online and in batches. Interrupted: run it again."""
    settings = get_settings()
    provider, _ = key_material(settings)
    size = batch_size or settings.privacy.rotation_batch_size

    from storefront.resources import open_resources

    async def main() -> None:
        async with open_resources(settings, role="cli") as resources:
            sessionmaker = resources.sessionmaker
            total = await pending(sessionmaker, provider)
            console.print(
                f"{total} data keys to re-wrap under master key "
                f"[bold]{provider.current_version}[/bold]"
            )
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("Re-wrapping data keys", total=total)
                result = await rotate_master(
                    sessionmaker,
                    provider,
                    batch_size=size,
                    on_batch=lambda count: progress.advance(task, count),
                )
        console.print(
            f"Re-wrapped {result.rewrapped} data keys in {result.batches} batches; "
            f"{result.remaining} left under another master version."
        )
        if result.remaining:
            console.print("Some rows were busy or new: run the command again to finish.")
            raise typer.Exit(code=1)
        console.print("Older master keys can now be removed from the configuration.")

    asyncio.run(main())
