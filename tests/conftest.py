"""Test harness: every API test runs on SQLite and on real PostgreSQL.

Each pytest-xdist worker gets its own databases (a SQLite file and a PostgreSQL database),
built once by running the Alembic migrations (never ``create_all``), and every test leaves
them empty again (tables truncated), so tests are isolated and parallel-safe.

PostgreSQL is found at STOREFRONT_TEST_POSTGRES_URL (default: the local trust-auth server).
When it is unreachable the PostgreSQL variants are skipped, loudly; under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from storefront.app import create_app
from storefront.cli import run_migrations
from storefront.models import metadata
from storefront.platform.runtime import Runtime
from storefront.settings import Settings
from tests.factories import Api
from tests.servers import OwnRedis

POSTGRES_ADMIN_URL = os.environ.get(
    "STOREFRONT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("STOREFRONT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_TEST_URL = os.environ.get(
    "STOREFRONT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
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


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "storefront.db"
    url = f"sqlite+aiosqlite:///{path}"
    run_migrations(database_url=url)
    return url


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


@pytest.fixture(scope="session")
def postgres_url(postgres_unavailable: str | None, worker_id_safe: str) -> Iterator[str]:
    require_or_skip(postgres_unavailable)
    name = f"storefront_test_{worker_id_safe}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        run_migrations(database_url=url)
        yield url
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
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        # cheap hashing in tests only; production parameters are the settings' defaults
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
        "database": {"pool_size": 20, "max_overflow": 10, "pool_timeout_seconds": 30},
        # a test signs in dozens of times a minute from one address; rate-limit tests set
        # their own tight policies (the defaults are for real clients)
        "protection": {"auth_rate": "10000/minute", "auth_account_rate": "10000/minute"},
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    fixture = "postgres_url" if backend == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


async def _empty_tables(runtime: Runtime) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    async with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # audit_events is append-only: its trigger refuses TRUNCATE to every ordinary
            # session. The tests connect as the superuser, which may switch triggers off for
            # this one transaction; the application's role in production cannot.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        try:
            yield application
        finally:
            await _empty_tables(application.state.runtime)


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    result: Runtime = app.state.runtime
    return result


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def api(client: httpx2.AsyncClient) -> Api:
    return Api(client)


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
def count_queries(runtime: Runtime) -> Iterator[Callable[[], QueryCounter]]:
    """Record every SQL statement the app sends (for N+1 and batching assertions)."""
    counter = QueryCounter()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            not statement.lstrip()
            .upper()
            .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
        ):
            counter.statements.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield lambda: counter
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", on_execute)
