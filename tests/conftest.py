"""Test harness: every API test runs on SQLite and on real PostgreSQL.

Each pytest-xdist worker gets its own databases (a SQLite file and a PostgreSQL database),
copies of templates the Alembic migrations (never ``create_all``) built once per run, and every
test leaves them empty again (rows deleted), so tests are isolated and parallel-safe.

The PostgreSQL variant of the shared ``settings`` fixture runs with production-like hardening
(a CORS allow-list, explicit personal-data keys: ``hardened_overrides``), so a setting cannot
silently break the service again (decision 0090).

PostgreSQL is found at STOREFRONT_TEST_POSTGRES_URL (default: the local trust-auth server).
When it is unreachable the PostgreSQL variants are skipped, loudly; under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.dependencies import models as fastapi_models
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import make_url

from storefront.cli import run_migrations
from storefront.resources import Resources
from storefront.settings import DEFAULT_JWT_SECRET, Settings
from tests.support.apps import empty_tables, freeze_long_lived, running_app
from tests.support.factories import Api
from tests.support.servers import LocalStripe, OwnRedis, start_localstripe

POSTGRES_ADMIN_URL = os.environ.get(
    "STOREFRONT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("STOREFRONT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_TEST_URL = os.environ.get(
    "STOREFRONT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def keep_bytecode_outside_the_tree() -> None:
    """Under PYTHONDONTWRITEBYTECODE (set on the CI image) every Python process compiled every
    module it imported from source: each test worker, and each `storefront` subprocess (2.7 s
    of CPU to print `secrets generate`, 0.9 s with bytecode). The tests cache bytecode under
    .pycache/ instead (PYTHONPYCACHEPREFIX, as the Makefile sets it): the tree stays free of
    __pycache__, as that setting intends, and the workers and subprocesses started from here
    inherit it."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    prefix = os.environ.get("PYTHONPYCACHEPREFIX") or str(
        Path(__file__).resolve().parent.parent / ".pycache"
    )
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


keep_bytecode_outside_the_tree()
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_unavailable_reason() -> str | None:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc!r}"
    return None


def require_or_skip(reason: str | None) -> None:
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a required service is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    return f"{worker}_{uuid.uuid4().hex[:8]}"


# Migrating a database from nothing costs seconds per backend (five to ten on a busy two-core
# machine), and every worker needs one of each, as do the tests that want a migrated database
# of their own. The migrations run once per test run instead, into a template of each backend
# (the first process to need one builds it under a lock, the others wait for it); workers and
# tests get copies: SQLite's file copied with the backup API, PostgreSQL's database cloned by
# CREATE DATABASE ... TEMPLATE. The controlling process drops them when the run ends.
# the process that starts the run names it; its xdist workers inherit the name
RUN_ID_VARIABLE = "STOREFRONT_TEST_RUN_ID"
OWNS_THE_RUN = RUN_ID_VARIABLE not in os.environ
RUN_ID = os.environ.setdefault(RUN_ID_VARIABLE, uuid.uuid4().hex[:10])
TEMPLATE_DIR = Path(tempfile.gettempdir()) / f"storefront-tests-{RUN_ID}"
POSTGRES_TEMPLATE = f"storefront_template_{RUN_ID}"


def _template(kind: str, build: Callable[[], str]) -> str:
    """What ``build`` made for ``kind`` in this run, built by the first process to ask."""
    TEMPLATE_DIR.mkdir(exist_ok=True)
    ready = TEMPLATE_DIR / f"{kind}.ready"
    with (TEMPLATE_DIR / f"{kind}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            ready.write_text(build())
        return ready.read_text()


def _build_sqlite_template() -> str:
    path = TEMPLATE_DIR / "template.db"
    run_migrations(database_url=f"sqlite+aiosqlite:///{path}")
    return str(path)


def migrated_sqlite(path: Path) -> str:
    """A migrated SQLite database at ``path`` (a copy of the run's template): its URL."""
    source = sqlite3.connect(_template("sqlite", _build_sqlite_template))
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return f"sqlite+aiosqlite:///{path}"


def _build_postgres_template() -> str:
    asyncio.run(_pg_admin(f'CREATE DATABASE "{POSTGRES_TEMPLATE}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=POSTGRES_TEMPLATE)
    run_migrations(database_url=url.render_as_string(hide_password=False))
    # a template may have no session open while it is copied: none may start now
    asyncio.run(_pg_admin(f'ALTER DATABASE "{POSTGRES_TEMPLATE}" ALLOW_CONNECTIONS false'))
    return POSTGRES_TEMPLATE


async def _clone(name: str, template: str) -> None:
    """CREATE DATABASE from the template; the migrations' own session may still be ending
    on the server for a moment after it closed (source database is being accessed)."""
    for _ in range(100):
        try:
            await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
        except asyncpg.ObjectInUseError:
            await asyncio.sleep(0.1)
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def migrated_postgres(name: str) -> str:
    """A new, migrated PostgreSQL database ``name`` (a clone of the run's template) whose
    commits do not wait for the disk: its URL. The caller drops it."""
    template = _template("postgres", _build_postgres_template)
    asyncio.run(_clone(name, template))
    asyncio.run(_pg_admin(NO_COMMIT_FLUSH.format(name=name)))
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that started the run (not an xdist worker) drops its templates."""
    if not OWNS_THE_RUN or not TEMPLATE_DIR.exists():
        return
    if (TEMPLATE_DIR / "postgres.ready").exists():
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{POSTGRES_TEMPLATE}" WITH (FORCE)'))
    shutil.rmtree(TEMPLATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory.mktemp("db") / "storefront.db")


@pytest.fixture(scope="session")
def postgres_unavailable() -> str | None:
    return postgres_unavailable_reason()


def redis_unavailable_reason() -> str | None:
    client = SyncRedis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisError as exc:
        return f"Redis unreachable at {REDIS_TEST_URL}: {exc!r}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_unavailable() -> str | None:
    return redis_unavailable_reason()


def rabbitmq_unavailable_reason() -> str | None:
    async def probe() -> None:
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_TEST_URL, timeout=3)
        await connection.close()

    try:
        # its own thread and loop: a session fixture may first be asked for inside a test's loop
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, probe()).result()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"RabbitMQ unreachable at {RABBITMQ_TEST_URL}: {exc!r}"
    return None


@pytest.fixture(scope="session")
def rabbitmq_unavailable() -> str | None:
    return rabbitmq_unavailable_reason()


@pytest.fixture
def rabbitmq_url(rabbitmq_unavailable: str | None) -> str:
    """The real RabbitMQ (skipped locally when absent; under CI=true its absence fails)."""
    require_or_skip(rabbitmq_unavailable)
    return RABBITMQ_TEST_URL


@pytest.fixture
def redis_url(redis_unavailable: str | None) -> str:
    """The real Redis (skipped locally when absent; under CI=true its absence fails)."""
    require_or_skip(redis_unavailable)
    return REDIS_TEST_URL


@pytest.fixture
def own_redis(redis_unavailable: str | None) -> Iterator[OwnRedis]:
    """A redis-server of this test's own (no persistence), which it may stop, pause and start
    again mid-run (skipped where the binary or the suite's Redis is missing)."""
    require_or_skip(None if shutil.which("redis-server") else "redis-server is not installed")
    require_or_skip(redis_unavailable)
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key namespace of this test's own; its keys are deleted afterwards."""
    prefix = f"sf-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = SyncRedis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except RedisError:
        pass
    finally:
        client.close()


# A test database's commits do not wait for the WAL to reach the disk (several milliseconds
# each, dozens of commits per test): what a commit does and when it is visible stay the same,
# only a crash of the server could lose the last ones, and a test database is thrown away.
NO_COMMIT_FLUSH = 'ALTER DATABASE "{name}" SET synchronous_commit = off'


@pytest.fixture(scope="session")
def postgres_url(postgres_unavailable: str | None, worker_id_safe: str) -> Iterator[str]:
    require_or_skip(postgres_unavailable)
    name = f"storefront_test_{worker_id_safe}"
    try:
        yield migrated_postgres(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[str]:
    """A brand-new, unmigrated database on each backend (for migration and CLI tests)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    require_or_skip(postgres_unavailable)
    name = f"storefront_empty_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(_pg_admin(NO_COMMIT_FLUSH.format(name=name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[str]:
    """A migrated database of this test's own on each backend (a copy of the run's template,
    as ``storefront migrate`` leaves a new database), for tests that run commands on it."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path / "migrated.db")
        return
    require_or_skip(postgres_unavailable)
    name = f"storefront_migrated_{uuid.uuid4().hex[:10]}"
    try:
        yield migrated_postgres(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        # cheap hashing in tests only; production parameters are the settings' defaults
        # and at nice 0: at nice 19 a sign-in waits behind every busy test worker for its turn
        "auth": {
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
            "argon2_parallelism": 1,
            "hashing_nice": 0,
        },
        "database": {"pool_size": 20, "max_overflow": 10, "pool_timeout_seconds": 30},
        # a test signs in dozens of times a minute from one address; rate-limit tests set
        # their own tight policies (the defaults are for real clients)
        # (and probes: tests poll /readyz and /healthz in loops)
        "protection": {
            "auth_rate": "10000/minute",
            "auth_account_rate": "10000/minute",
            "operations_rate": "100000/minute",
        },
    }
    values.update(overrides)
    # Budgets in tests are tiny ("1/minute") and a test asserts the exact refusal; the
    # default sliding-window counter floors the previous window's weighted count, so two
    # requests either side of a minute boundary both pass (CI failed that way after a
    # 9 s stall). Tests count with the exact moving window unless they choose a strategy;
    # tests/web/test_rate_limit.py runs the production default on purpose.
    protection = values.get("protection")
    if isinstance(protection, dict):
        values["protection"] = {"rate_limit_strategy": "moving-window", **protection}
    # PostgreSQL's statement_timeout (5 s in production) is a runaway-query guard; a shared
    # CI machine stalls for seconds at a time, and a SAVEPOINT was cancelled once. Tests
    # keep the guard with room (tests/web/test_protection.py sets its own short one).
    database = values.get("database")
    if isinstance(database, dict):
        values["database"] = {"statement_timeout_ms": 30_000, **database}
    # domain events are delivered in-process unless a test asks for RabbitMQ (tests/events
    # does): an app test with an amqp job broker leaves no event queues on the shared broker
    values.setdefault("events", {"in_process": True})
    # the periodic readiness check (decision 0112) queries the app's engine on its own
    # schedule: off for in-process tests, which count statements; tests of it turn it on
    observability = values.get("observability")
    if observability is None or isinstance(observability, dict):
        values["observability"] = {"readiness_interval_seconds": 0, **(observability or {})}
    return Settings(**values)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    fixture = "postgres_url" if backend == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


# Origins the hardened variant allows (tests/web/test_cors_configured.py for the behaviour).
CORS_TEST_ORIGINS = ["https://app.example", "https://admin.app.example"]


def hardened_overrides() -> dict[str, Any]:
    """Production-like settings that a test app can run with (a setting must
    not silently break the service again): a CORS allow-list, and personal-data keys given
    explicitly, as production must, instead of derived. The keys are the ones development
    derives from the default secret, so an app a test builds with plain ``make_settings`` on
    the same database still reads what this one wrote. ``environment`` itself stays "test":
    production's own switches (docs, metrics on the API port, required secrets) have their
    own tests."""
    from storefront.kit.kdf import derive_key
    from storefront.kit.master_keys import DEV_VERSION
    from storefront.vault.config import DEV_BLIND_PURPOSE, DEV_MASTER_PURPOSE

    def b64(purpose: str) -> str:
        return base64.b64encode(derive_key(DEFAULT_JWT_SECRET, purpose=purpose)).decode()

    return {
        "cors_origins": list(CORS_TEST_ORIGINS),
        "privacy": {
            "master_keys": f"{DEV_VERSION}:{b64(DEV_MASTER_PURPOSE)}",
            "blind_index_key": b64(DEV_BLIND_PURPOSE),
        },
    }


# Settings are frozen; reading them (the environment included) costs more than many tests, so
# the ``settings`` fixture builds each combination once per worker. The key holds every
# STOREFRONT_* variable: a test that sets one before the fixture is built gets its own.
_settings_built: dict[tuple[str, str, tuple[tuple[str, str], ...]], Settings] = {}


@pytest.fixture
def settings(database_url: str, backend: str) -> Settings:
    """Every test using ``settings``/``app``/``client``/``api`` runs twice: on SQLite with the
    plain test settings, and on PostgreSQL with the hardened ones (CORS allow-list and
    explicit keys, see ``hardened_overrides``), so CORS is always exercised at no extra
    run time."""
    environment = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith("STOREFRONT_"))
    )
    key = (database_url, backend, environment)
    if key not in _settings_built:
        if backend == "postgres":
            _settings_built[key] = make_settings(database_url, **hardened_overrides())
        else:
            _settings_built[key] = make_settings(database_url)
    return _settings_built[key]


# tests that run an app of their own empty its tables with this too
_empty_tables = empty_tables


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The worker's app for these settings (built once), with a lifespan of this test's own:
    fresh resources, empty tables afterwards (tests/support/apps.py)."""
    async with running_app(settings) as application:
        yield application


@pytest.fixture
def resources(app: FastAPI) -> Resources:
    result: Resources = app.state.resources
    return result


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


USERS_OVER_HTTP = "users_over_http"
# a test that asks for one of these fixtures needs that real service: marked for it, so
# `make test-fast` (-m "not postgres and not redis and not rabbitmq") leaves it out
SERVICE_FIXTURES = {
    "postgres_url": "postgres",
    "redis_url": "redis",
    "redis_prefix": "redis",
    "own_redis": "redis",
    "rabbitmq_url": "rabbitmq",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{USERS_OVER_HTTP}: the api fixture's users register and sign in over HTTP (the test "
        "reads their sessions, refresh tokens or sign-in audit entries)",
    )
    config.addinivalue_line("markers", "redis: needs a real Redis server (set by fixture)")
    config.addinivalue_line("markers", "rabbitmq: needs a real RabbitMQ (set by fixture)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            marker = SERVICE_FIXTURES.get(name)
            if marker is not None:
                item.add_marker(marker)


def pytest_collection_finish(session: pytest.Session) -> None:
    freeze_long_lived()  # the modules and the collected tests live as long as the worker


# FastAPI's classification of dependency callables (fastapi/dependencies/models.py) is
# module-level lru_caches of 4,096 entries keyed by the callables themselves: they kept
# every app a test built (8-10 MB each) alive long after the test, and the worker's heap,
# which every full garbage collection walks, grew past 2 GB. Cleared after each test; the
# shared apps classify their dependencies again at their next request, a few microseconds.
_FASTAPI_CALLABLE_CACHES = [
    getattr(fastapi_models, name)
    for name in dir(fastapi_models)
    if name.endswith("_cached") and hasattr(getattr(fastapi_models, name), "cache_clear")
]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    for cache in _FASTAPI_CALLABLE_CACHES:
        cache.cache_clear()


@pytest.fixture
def api(client: httpx2.AsyncClient, app: FastAPI, request: pytest.FixtureRequest) -> Api:
    """Test data over HTTP; users made through the identity service with a minted token
    (tests/support/factories.py), or signed in over HTTP under ``@pytest.mark.users_over_http``."""
    if request.node.get_closest_marker(USERS_OVER_HTTP) is not None:
        return Api(client)
    return Api(client, app.state.resources)


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class QueryCounter:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def count_queries(resources: Resources) -> Iterator[Callable[[], QueryCounter]]:
    """Record every SQL statement the app sends (for N+1 and batching assertions)."""
    counter = QueryCounter()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            not statement.lstrip()
            .upper()
            .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
        ):
            counter.statements.append(statement)

    event.listen(resources.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield lambda: counter
    finally:
        event.remove(resources.engine.sync_engine, "before_cursor_execute", on_execute)


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """The payment provider's emulator (localstripe), one per test worker."""
    server = start_localstripe()
    try:
        yield server
    finally:
        server.stop()
