"""The ``storefront`` command: serve, migrate, seed."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from storefront.schema import migrations_dir
from storefront.settings import get_settings

app = typer.Typer(help="Storefront: a production-grade commerce backend.", no_args_is_help=True)
console = Console()


def run_migrations(revision: str = "head", *, database_url: str | None = None) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["configure_logging"] = False
    if database_url:
        cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply database migrations (upgrade to head by default)."""
    run_migrations(revision)
    console.print(f"[green]Database migrated to {revision}.[/green]")


@app.command()
def seed(
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Only seed a database with no users")
    ] = False,
) -> None:
    """Create demo shops, users, products and orders (safe to run twice)."""
    from storefront.app import build_runtime
    from storefront.seed import DEMO_PASSWORD, USERS, database_is_empty
    from storefront.seed import seed as run_seed

    settings = get_settings()

    async def main() -> None:
        runtime = build_runtime(settings)
        try:
            if if_empty and not await database_is_empty(runtime.sessionmaker):
                console.print("Database already has data; not seeding.")
                return
            report = await run_seed(runtime.sessionmaker, runtime.passwords, console)
        finally:
            await runtime.engine.dispose()
        if report.created:
            console.print(
                f"Seeded {report.users} users, {report.shops} shops, "
                f"{report.products} products, {report.orders} orders."
            )
            console.print(f"Demo accounts (password [bold]{DEMO_PASSWORD}[/bold]):")
            for email, name, _ in USERS:
                console.print(f"  {email:28} {name}")
        else:
            console.print("Demo data already present; nothing to do.")

    asyncio.run(main())


@app.command()
def serve(
    reload: Annotated[bool, typer.Option(help="Development only: restart on changes")] = False,
) -> None:
    """Serve the API with uvicorn (host, port and workers from settings)."""
    import uvicorn

    settings = get_settings()
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"Storefront API on [bold]{base}/api/v1[/bold]  docs: [bold]{base}/docs[/bold]")
    console.print(
        "Sign in on the docs page with Authorize, or: "
        f"curl -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' "
        '-d \'{"email":"customer@storefront.test","password":"storefront-demo-2026"}\'',
        soft_wrap=True,
        highlight=False,
    )
    uvicorn.run(
        "storefront.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=None if reload else settings.workers,
        reload=reload,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        server_header=False,
        proxy_headers=False,
        log_level="info",
    )


if __name__ == "__main__":
    app()
