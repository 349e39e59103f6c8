"""The ``storefront`` command: serve, migrate, seed, worker, admin, secrets...

Every command explains an expected failure (a bad setting, an unreachable database) in a few
lines naming the variable to fix and exits 2 (configuration) or 3 (a dependency is
unreachable); 1 means the command refused. Only bugs print a traceback (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from storefront.admin_cli import admin_app, secrets_app
from storefront.audit.cli import audit_app
from storefront.events_cli import events_app
from storefront.identity.cli import keys_app
from storefront.kit.startup import (
    EXIT_CONFIG,
    CommandRefused,
    configured_database_url,
    explain,
    require_listenable,
    unknown_env_warnings,
)
from storefront.migration_head import migrations_dir as migrations_dir  # tests import it from here
from storefront.privacy.cli import retention_app
from storefront.settings import Environment, Settings, get_settings
from storefront.web.paths import API_PREFIX

if TYPE_CHECKING:
    from fastapi import FastAPI


class StorefrontCli(typer.Typer):
    """Typer, with expected failures turned into one clear message and an exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            failure = explain(exc, database_url=_database_url_for_messages())
            if failure is None:
                raise  # a bug: its traceback is what a developer needs
            typer.echo(failure.message, err=True)
            raise SystemExit(failure.exit_code) from None


def _database_url_for_messages() -> str | None:
    try:
        return get_settings().database_url
    except Exception:  # noqa: BLE001 - the settings are what failed: use the raw value
        return configured_database_url()


app = StorefrontCli(
    help="Storefront: a production-grade commerce backend.",
    no_args_is_help=True,
    # a bug's traceback must not print local variables: they hold URLs with passwords
    pretty_exceptions_show_locals=False,
)
console = Console()


@app.callback()
def _before_every_command() -> None:
    for warning in unknown_env_warnings(os.environ, Settings):
        typer.echo(warning, err=True)


def run_migrations(revision: str = "head", *, database_url: str | None = None) -> None:
    """Upgrade (or move) to ``revision``, quietly: for tests and tools."""
    from alembic import command

    from storefront.migrating import alembic_config

    command.upgrade(alembic_config(database_url), revision)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision (default: the newest)")] = "head",
    allow_downgrade: Annotated[
        bool,
        typer.Option(
            "--allow-downgrade",
            help="Allow a target older than the database (undoes revisions; data they hold "
            "is lost: back up first)",
        ),
    ] = False,
) -> None:
    """Apply database migrations (to the newest by default) and report each one applied."""
    from storefront.migrating import Applied, apply, current_revision, make_plan, scripts

    settings = get_settings()
    current = current_revision(settings.database_url)
    plan = make_plan(scripts(), current, revision)
    at = current or "(empty: no revision)"
    if not plan.steps:
        where = "head" if current == plan.head else "the requested revision"
        typer.echo(f"Already at {where} ({at}): nothing to do.")
        return
    undone = ", ".join(step.revision for step in plan.steps)
    if plan.downgrade and not allow_downgrade:
        raise CommandRefused(
            f"the database is at {at}; {revision} is older, so this would be a DOWNGRADE "
            f"undoing {undone} (their tables and columns, and the data in them, are "
            "dropped). Nothing was changed. To do it anyway, back up the database and run: "
            f"storefront migrate {revision} --allow-downgrade"
        )
    target = plan.target or "base (empty)"
    verb = "Downgrading" if plan.downgrade else "Upgrading"
    typer.echo(f"Database at {at}; {verb.lower()} to {target}: {len(plan.steps)} revision(s).")
    progress = logging.getLogger("storefront.migrations")  # data migrations' row counts
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("    %(message)s"))
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)

    def report(step: Applied) -> None:
        done = "applied" if step.upgrade else "undone"
        typer.echo(f"  {done} {step.revision}  {step.message}  ({step.seconds:.1f} s)")

    try:
        applied = apply(plan, database_url=settings.database_url, on_applied=report)
    finally:
        progress.removeHandler(handler)
    done = "Downgraded" if plan.downgrade else "Migrated"
    typer.echo(f"{done} from {at} to {target}: {', '.join(a.revision for a in applied)}.")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@app.command()
def backfill(
    name: Annotated[str, typer.Argument(help="The registered backfill to run")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Rows per transaction")
    ] = 1000,
    rate: Annotated[
        float, typer.Option("--rate", min=0.0, help="At most this many rows a second (0: no limit)")
    ] = 0.0,
    max_lag: Annotated[
        float,
        typer.Option(
            "--max-lag", min=0.0, help="Pause while a streaming replica lags more (seconds)"
        ),
    ] = 5.0,
) -> None:
    """Run a registered data migration in batches of short transactions while the service
    runs: resumable after a crash, throttled by replica lag and --rate (docs/migrations.md)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from storefront.backfills import BACKFILLS, run_backfill
    from storefront.backfills import Progress as Step
    from storefront.kit.db import create_engine

    chosen = BACKFILLS.get(name)
    if chosen is None:
        known = ", ".join(sorted(BACKFILLS)) or "(none)"
        raise CommandRefused(f"no backfill named {name!r}; registered: {known}", EXIT_CONFIG)
    settings = get_settings()
    typer.echo(f"Backfill {chosen.name}: {chosen.description}")
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}  ETA {task.fields[eta]}"),
        console=console,
        transient=False,
    )
    task = bar.add_task(chosen.name, total=None, speed="", eta="?")
    last_line = float("-inf")

    def show(step: Step) -> None:
        nonlocal last_line
        if step.waiting_for_lag is not None:
            speed, eta = f"waiting: replica {step.waiting_for_lag:.1f} s behind", "?"
        else:
            speed, eta = f"{step.rate:.0f} rows/s", _duration(step.eta_seconds)
        if console.is_terminal:
            bar.update(task, completed=step.done, total=step.total, speed=speed, eta=eta)
            return
        now = time.monotonic()  # a log, not a terminal: a line at most every 2 seconds
        if now - last_line >= 2 or step.done >= step.total:
            last_line = now
            typer.echo(f"  {step.done}/{step.total} rows  {speed}  ETA {eta}")

    async def main() -> None:
        engine = create_engine(settings.database_url)
        try:
            if console.is_terminal and not dry_run:
                bar.start()
            try:
                report = await run_backfill(
                    engine,
                    chosen,
                    batch_size=batch_size,
                    rate=rate,
                    max_lag=max_lag,
                    dry_run=dry_run,
                    on_progress=show,
                )
            finally:
                if console.is_terminal and not dry_run:
                    bar.stop()
        finally:
            await engine.dispose()
        if report.dry_run:
            eta = f", about {_duration(report.pending_at_start / rate)} at --rate {rate:g}"
            typer.echo(
                f"Dry run: {report.pending_at_start} row(s) to change in {report.batches} "
                f"batch(es) of {batch_size}{eta if rate else ''}; {report.rows_done} done by "
                "earlier runs. Nothing was changed."
            )
            return
        typer.echo(
            f"Backfill {chosen.name} finished: {report.rows_changed} row(s) changed in "
            f"{report.batches} batch(es) ({report.rows_done} in all), {report.seconds:.1f} s"
            + (
                f", {report.seconds_waiting_for_lag:.1f} s waiting for the replica"
                if report.seconds_waiting_for_lag
                else ""
            )
            + f". Revision {chosen.contract_revision} (the contract) may now be applied."
        )

    asyncio.run(main())


def _environment_variable() -> str | None:
    for key, value in os.environ.items():
        if key.upper() == "STOREFRONT_ENVIRONMENT":
            return value.strip().lower()
    return None


@app.command()
def seed(
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Only seed a database with no users")
    ] = False,
) -> None:
    """Create demo shops, users, products and orders (safe to run twice). Never in
    production, whatever the flags: use `storefront admin create` there."""
    from storefront.resources import open_resources
    from storefront.seed import DEMO_PASSWORD, USERS, DemoDataRefused, database_is_empty
    from storefront.seed import seed as run_seed

    # before the settings are even read: a production deployment with a setting missing
    # must still get this answer, not a request to fix the setting and come back
    if _environment_variable() == Environment.production.value:
        raise CommandRefused(DemoDataRefused.MESSAGE)
    settings = get_settings()
    if settings.environment is Environment.production:
        raise CommandRefused(DemoDataRefused.MESSAGE)

    async def main() -> None:
        async with open_resources(settings, role="cli") as resources:
            if if_empty and not await database_is_empty(resources.sessionmaker):
                console.print("Database already has data; not seeding.")
                return
            report = await run_seed(
                resources.sessionmaker,
                resources.passwords,
                console,
                settings=settings,
                vault=resources.vault,
                cache=resources.cache,
            )
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


# the API's metrics port (9101 by default in production; decision 0092)
METRICS_PORT_ENV = "STOREFRONT_OBSERVABILITY__METRICS_PORT"

# prometheus-client's own variable (not imported from it: importing it with a missing
# directory is what fails)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _require_metrics_directory() -> None:
    """PROMETHEUS_MULTIPROC_DIR, when set, must be an existing directory (decision 0127):
    prometheus-client writes every process's samples there from its first import on."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured and not os.path.isdir(configured):
        raise CommandRefused(
            f"{MULTIPROC_ENV}={configured} is not an existing directory (the metrics of "
            "every process are written there)\n"
            f"fix: create it (empty, writable by this user) or unset {MULTIPROC_ENV}",
            exit_code=EXIT_CONFIG,
        )


@app.command()
def worker() -> None:
    """Run the background-job worker for STOREFRONT_BROKER_URL (SIGTERM: finish and stop)."""
    _require_metrics_directory()  # before anything imports prometheus-client
    import logging
    import signal

    from storefront.app import JOBS
    from storefront.events import EventBus
    from storefront.graphql.live import LiveHub, live_consumer
    from storefront.jobs.queue import run_worker
    from storefront.orders.expiry import OrderExpirySchedule
    from storefront.payments.tasks import ReconciliationSchedule
    from storefront.privacy.retention import RetentionSchedule
    from storefront.resources import open_resources
    from storefront.sales import CONSUMERS
    from storefront.web.health import ReadinessMonitor

    settings = get_settings()
    if not settings.broker_url:
        # a start-up error like the others: on stderr, error:/fix:, exit 2
        raise CommandRefused(
            "STOREFRONT_BROKER_URL is not set: without a broker, jobs run inside the API "
            "process and need no worker\n"
            "fix: set STOREFRONT_BROKER_URL to redis://... or amqp://... to use a worker",
            exit_code=EXIT_CONFIG,
        )
    # the API's log format, traces and a /metrics endpoint for the job metrics
    from storefront import __version__
    from storefront.resources.instrument import setup_observability
    from storefront.telemetry.metrics import serve_metrics

    observability = setup_observability(settings, __version__)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )

    async def main() -> None:
        # the worker's queue is started by run_worker (it waits for the broker); the
        # resources close after it has shut down
        async with open_resources(
            settings, role="worker", jobs=JOBS, observability=observability
        ) as resources:
            metrics_port = settings.observability.worker_metrics_port
            if metrics_port:  # its scrape target is its readiness (0112): taken is fatal
                require_listenable(
                    settings.host, metrics_port, "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT"
                )
            serve_metrics(metrics_port, settings.host)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            console.print(f"Storefront worker consuming queue [bold]{settings.jobs.queue}[/bold]")
            retention = RetentionSchedule(resources, settings)
            expiry = OrderExpirySchedule(resources, settings)
            reconciliation = ReconciliationSchedule(resources, settings)
            # the worker's own readiness (database, schema, broker) into storefront_ready
            readiness = ReadinessMonitor(
                resources,
                role="worker",
                interval=settings.observability.readiness_interval_seconds,
                timeout=settings.observability.readiness_timeout_seconds,
                broker_url=settings.broker_url,
            )
            # domain events (decision 0140): the worker relays and runs the consumers; the
            # GraphQL subscriptions' updates go out through Redis to every API process
            live = LiveHub(resources.redis, settings.redis_prefix)
            events = EventBus.from_settings(
                settings,
                resources.sessionmaker,
                (*CONSUMERS, live_consumer(live.announce)),
                consume=True,
            )
            try:
                await events.start()
                readiness.start()
                retention.start()  # GDPR retention (docs/privacy.md) runs in the worker
                expiry.start()  # unpaid orders expire (decision 0118), also in the worker
                reconciliation.start()  # stuck payments settled (decision 0137)
                await run_worker(resources.jobs, resources, stop)
            finally:
                await readiness.stop()
                await retention.stop()
                await expiry.stop()
                await reconciliation.stop()
                await events.stop()
        console.print("Storefront worker stopped.")

    asyncio.run(main())


def served_app() -> FastAPI:
    """What `storefront serve` runs in each worker process (uvicorn's factory): the app, its
    start-up heap frozen out of the garbage collector once started (web/serving.py)."""
    from storefront.app import create_app
    from storefront.web.serving import freeze_heap_after_startup

    return freeze_heap_after_startup(create_app())


@app.command()
def serve(
    reload: Annotated[bool, typer.Option(help="Development only: restart on changes")] = False,
) -> None:
    """Serve the API with uvicorn (host, port and workers from settings)."""
    _require_metrics_directory()  # before anything imports prometheus-client
    import uvicorn

    from storefront.resources.instrument import configure_logging_from
    from storefront.telemetry.metrics import serve_metrics
    from storefront.vault.config import key_material
    from storefront.web.edge_server import EdgeHttpToolsProtocol
    from storefront.web.serving import prepare_multiprocess_metrics

    settings = get_settings()
    # the personal-data keys (a key file to read) are configuration: explained here, not as
    # a traceback from inside uvicorn's application start-up
    key_material(settings)
    # a port in use, named before anything starts: uvicorn binds only after the app's start-up
    require_listenable(settings.host, settings.port, "STOREFRONT_PORT")
    if settings.api_metrics_port:
        require_listenable(settings.host, settings.api_metrics_port, METRICS_PORT_ENV)
    base = f"http://{settings.host}:{settings.port}"
    docs = f"  docs: [bold]{base}/docs[/bold]" if settings.docs_served else ""
    console.print(f"Storefront API on [bold]{base}{API_PREFIX}[/bold]{docs}")
    if settings.api_metrics_port:
        console.print(
            f"Metrics on [bold]http://{settings.host}:{settings.api_metrics_port}/metrics[/bold]"
        )
    if settings.environment is not Environment.production:  # production has no demo data
        console.print(
            "Sign in on the docs page with Authorize, or: "
            f"curl -X POST {base}{API_PREFIX}/auth/login -H 'Content-Type: application/json' "
            '-d \'{"email":"customer@storefront.test","password":"storefront-demo-2026"}\'',
            soft_wrap=True,
            highlight=False,
        )
    # our log format for uvicorn's lines too (access lines come from the app), and
    # a shared metrics directory when several worker processes serve (docs/operations.md)
    configure_logging_from(settings)
    prepare_multiprocess_metrics(1 if reload else settings.workers)
    # the API's metrics on a port of their own, never the public one (decision 0092): served
    # by this process, which with several workers reads every worker's samples
    serve_metrics(settings.api_metrics_port, settings.host)
    uvicorn.run(
        "storefront.cli:served_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=None if reload else settings.workers,
        reload=reload,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        server_header=False,
        proxy_headers=False,
        # httptools (llhttp, in C) with the edge guarantees of decision 0192: a request head
        # bounded in bytes (STOREFRONT_PROTECTION__MAX_HEADER_BYTES) and in time
        # (..._HEADER_TIMEOUT_SECONDS), ambiguous framing refused, refusals as problems
        http=EdgeHttpToolsProtocol,
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
app.add_typer(admin_app, name="admin")
app.add_typer(secrets_app, name="secrets")
app.add_typer(events_app, name="events")


if __name__ == "__main__":
    app()
