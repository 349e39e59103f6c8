"""``storefront audit ...``: check the audit log's hash chain."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from storefront.auditlog.chain import Verification, verify_chain
from storefront.kit.db import snapshot_session
from storefront.settings import Settings, get_settings

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


async def verify_database(settings: Settings, *, batch_size: int) -> Verification:
    from storefront.resources import open_resources

    # one consistent snapshot for the whole walk, without blocking writers
    async with (
        open_resources(settings, role="cli") as resources,
        snapshot_session(resources.sessionmaker) as session,
        session.begin(),
    ):
        return await verify_chain(session, batch_size=batch_size)


@audit_app.command("verify")
def verify(
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Entries read per query.")
    ] = 5000,
) -> None:
    """Walk the chain in order and name the first broken link (exit code 1 if there is one)."""
    result = asyncio.run(verify_database(get_settings(), batch_size=batch_size))
    if result.broken is None:
        typer.echo(f"OK: {result.checked} entries, chain intact.")
        typer.echo(f"Head hash (note it: a later run must extend it): {result.head_hash}")
        return
    broken = result.broken
    typer.echo(f"BROKEN at entry {broken.seq}: {broken.problem} ({broken.detail}).")
    typer.echo(f"{result.checked} entries before it verified; last good hash: {result.head_hash}")
    raise typer.Exit(1)
