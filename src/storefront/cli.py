"""The ``storefront`` command: serve, migrate, seed, worker."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from storefront.identity.cli import keys_app
from storefront.platform.audit.cli import audit_app
from storefront.privacy.cli import retention_app
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
            await runtime.aclose()
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
def worker() -> None:
    """Run the background-job worker for STOREFRONT_BROKER_URL (SIGTERM: finish and stop)."""
    import logging
    import signal

    from storefront.app import build_runtime
    from storefront.platform.jobs import run_worker
    from storefront.privacy.retention import RetentionSchedule

    settings = get_settings()
    if not settings.broker_url:
        console.print(
            "[red]STOREFRONT_BROKER_URL is not set:[/red] jobs then run inside the API "
            "process and need no worker. Set it to redis://... or amqp://... to use one."
        )
        raise typer.Exit(code=2)
    # issue 7: the API's log format, traces and a /metrics endpoint for the job metrics
    from storefront import __version__
    from storefront.platform.observability.metrics import serve_metrics
    from storefront.platform.observability.setup import instrument_runtime, setup_observability

    observability = setup_observability(settings, __version__)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )

    async def main() -> None:
        runtime = build_runtime(settings)
        instrument_runtime(runtime, observability)
        serve_metrics(settings.observability.worker_metrics_port, settings.host)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        assert runtime.jobs is not None  # noqa: S101 - build_runtime always builds one
        console.print(f"Storefront worker consuming queue [bold]{settings.jobs.queue}[/bold]")
        retention = RetentionSchedule(runtime, settings)
        try:
            retention.start()  # GDPR retention (docs/privacy.md) runs in the worker
            await run_worker(runtime.jobs, runtime, stop)
        finally:
            await retention.stop()
            await runtime.aclose()
        console.print("Storefront worker stopped.")

    asyncio.run(main())


@app.command()
def serve(
    reload: Annotated[bool, typer.Option(help="Development only: restart on changes")] = False,
) -> None:
    """Serve the API with uvicorn (host, port and workers from settings)."""
    import uvicorn

    from storefront.platform.observability.setup import configure_logging_from
    from storefront.platform.serving import prepare_multiprocess_metrics

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
    # issue 7: our log format for uvicorn's lines too (access lines come from the app), and
    # a shared metrics directory when several worker processes serve (docs/operations.md)
    configure_logging_from(settings)
    prepare_multiprocess_metrics(1 if reload else settings.workers)
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
        log_level=settings.observability.log_level.lower(),
        log_config=None,
        access_log=False,
        # a worker answers the supervisor's pings only once booted; a cold start on a busy
        # host can take longer than uvicorn's 5 s default, which would kill it in a loop
        timeout_worker_healthcheck=60,
    )


app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")


if __name__ == "__main__":
    app()
