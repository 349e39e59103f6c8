"""``storefront retention run [--dry-run]``: apply the retention periods now."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from storefront.settings import get_settings

retention_app = typer.Typer(help="Personal-data retention (docs/privacy.md).")
console = Console()


@retention_app.command("run")
def run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted")
    ] = False,
) -> None:
    """Delete what is past its retention period, per category (what the scheduled job does)."""
    from storefront.privacy.retention import run_retention
    from storefront.resources import open_resources

    settings = get_settings()

    async def main() -> None:
        async with open_resources(settings, role="cli") as resources:
            report = await run_retention(resources, settings, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        console.print(f"Retention{' (dry run: nothing deleted)' if dry_run else ''}:")
        for name, count in report.counts.items():
            console.print(f"  {name:20} {verb} {count}", highlight=False)

    asyncio.run(main())
