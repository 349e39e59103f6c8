"""One app per test worker and settings, a fresh lifespan per test.

``create_app`` builds the routes, their dependency graphs and their pydantic models; that
costs far more than most tests. The app object holds nothing else a test could change: every
resource with state (engines, Redis pool, response cache, throttles, rate limiter,
idempotency store, signing-key cache, job queue and its in-process broker, readiness) is
opened by the lifespan and closed with it, so each test runs its own lifespan on the shared
app and gets all of them new, bound to its own event loop. What lives outside the lifespan is
reset here: the tables are emptied, the process-wide dependency statuses cleared and the
logging handler installed again (a test may have replaced it). An app a test changed (a route
added, a dependency overridden, a request left in flight) is dropped, not reused.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from storefront.app import create_app
from storefront.infra.availability import _reset_statuses
from storefront.models import metadata
from storefront.partitioning import OLD
from storefront.partitioning import TABLES as PARTITIONED_TABLES
from storefront.resources import Resources
from storefront.resources.instrument import configure_logging_from
from storefront.settings import Settings
from storefront.web.limits import LoadSheddingMiddleware

# the settings seen most in one worker: the two backends' defaults plus a module's own few
MAX_APPS = 6
_apps: list[tuple[dict[str, Any], FastAPI]] = []


def shared_app(settings: Settings) -> FastAPI:
    """The app built from settings of these values in this worker, built on first use.
    Values, not identity: secrets compare by their value (SecretStr), so settings that differ
    in a key never share an app."""
    for index, (_, app) in enumerate(_apps):
        if app.state.settings is settings:  # the settings fixture hands out the same object
            _apps.insert(0, _apps.pop(index))
            return app
    values = settings.model_dump()
    for index, (built_from, app) in enumerate(_apps):
        if built_from == values:
            _apps.insert(0, _apps.pop(index))
            return app
    app = create_app(settings)
    _apps.insert(0, (values, app))
    if len(_apps) > MAX_APPS:
        del _apps[MAX_APPS:]
        gc.unfreeze()  # the apps let go of may be collected
    freeze_long_lived()
    return app


def discard(app: FastAPI) -> None:
    _apps[:] = [(values, kept) for values, kept in _apps if kept is not app]
    gc.unfreeze()


def freeze_long_lived() -> None:
    """Leave what lives now (modules, the shared apps) out of the garbage collector's passes.
    A worker holds hundreds of megabytes of them, and each full collection walked all of it:
    21% of a worker's CPU went to the collector on a 464-test subset. The next full
    collection first empties the young generations, so only what is long-lived is frozen."""
    gc.collect()
    gc.freeze()


def _requests_in_flight(app: FastAPI) -> int:
    layer: Any = app.middleware_stack
    while layer is not None:
        if isinstance(layer, LoadSheddingMiddleware):
            return layer.in_flight
        layer = getattr(layer, "app", None)
    return 0


def _unchanged(app: FastAPI, routes: int) -> bool:
    return (
        len(app.router.routes) == routes
        and not app.dependency_overrides
        and _requests_in_flight(app) == 0
    )


# children before parents, so SQLite's foreign-key checks pass at every statement
_DELETE_ALL = "; ".join(
    f"DELETE FROM {t.name}"  # noqa: S608 - fixed names
    for t in reversed(metadata.sorted_tables)
)
# PostgreSQL only: the tables the partition swap keeps in step for a rollback (revision 0020).
# The delete above runs with triggers off, so their mirror does not empty them; left full,
# a later test's write would be mirrored into a table still holding an earlier test's rows.
_DELETE_PARTITION_OLD = (
    "DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY["  # noqa: S608 - fixed names
    + ", ".join(f"'{name}{OLD}'" for name in reversed(PARTITIONED_TABLES))
    + "] LOOP IF to_regclass(t) IS NOT NULL THEN EXECUTE 'DELETE FROM ' || t; END IF; "
    "END LOOP; END $$"
)


async def empty_tables(resources: Resources) -> None:
    """Delete every row the test wrote, in one transaction sent as one script (one round trip
    instead of one per table). DELETE, not TRUNCATE: on PostgreSQL a TRUNCATE of every table
    costs hundreds of milliseconds (new files for each table), a DELETE of the few rows a test
    writes a few."""
    async with resources.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if conn.dialect.name == "postgresql":
            # audit_events is append-only: its trigger refuses DELETE to every ordinary
            # session. The tests connect as the superuser, which may switch triggers (and
            # with them the foreign-key checks) off for this one transaction; the
            # application's role in production cannot.
            script = (
                f"BEGIN; SET LOCAL session_replication_role = replica; {_DELETE_ALL}; "
                f"{_DELETE_PARTITION_OLD}; COMMIT"
            )
            try:
                await driver.execute(script)  # the simple protocol: many statements at once
            except Exception:
                with contextlib.suppress(Exception):  # not back to the pool mid-transaction
                    await driver.execute("ROLLBACK")
                raise
        else:
            # executescript commits whatever is pending first; BEGIN IMMEDIATE takes the write
            # lock up front, as the app's own transactions do
            await driver.executescript(f"BEGIN IMMEDIATE; {_DELETE_ALL}; COMMIT;")


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The shared app for ``settings``, its lifespan running; empty tables afterwards."""
    app = shared_app(settings)
    configure_logging_from(settings)
    _reset_statuses()
    routes = len(app.router.routes)
    try:
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
            try:
                yield app
            finally:
                # the relay's pass under way finishes first: an in-process delivery after
                # the delete would leave a row (a sales projection day) for the next test
                bus = getattr(app.state, "events", None)
                if bus is not None:
                    await bus.relay.stop()
                await empty_tables(app.state.resources)
    finally:
        if not _unchanged(app, routes):
            discard(app)
