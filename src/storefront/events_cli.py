"""``storefront events ...``: rebuild the projections from the stored event stream, and
write the AsyncAPI document of the events.

Beside the other command groups, not in the sales package: importing a domain (its metrics)
at start-up would run before the command checks PROMETHEUS_MULTIPROC_DIR (decision 0127), so
the domains are imported when a command runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from storefront.settings import Settings, get_settings

events_app = typer.Typer(help="Domain events (decision 0140).", no_args_is_help=True)


async def replay_database(settings: Settings) -> int:
    from storefront.resources import open_resources
    from storefront.sales import rebuild

    async with open_resources(settings, role="cli") as resources:
        return await rebuild(resources.sessionmaker)


@events_app.command("replay")
def replay() -> None:
    """Rebuild the sales projection by replaying every stored event (one transaction)."""
    replayed = asyncio.run(replay_database(get_settings()))
    typer.echo(f"OK: sales projection rebuilt from {replayed} event(s).")


@events_app.command("asyncapi")
def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="Write here instead of standard output.")
    ] = None,
) -> None:
    """The AsyncAPI 3.0 document of the events (docs/asyncapi.json is this, committed)."""
    from storefront.events.asyncapi import asyncapi_document
    from storefront.sales import CONSUMERS

    document = asyncapi_document(CONSUMERS)
    if output is None:
        typer.echo(document, nl=False)
    else:
        output.write_text(document, encoding="utf-8")
        typer.echo(f"wrote {output}")
