"""PostgreSQL faults at a chosen statement: PostgreSQL itself terminates the connection
about to run it (``pg_terminate_backend``), as a failover does to a request in flight."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event

from storefront.resources import Resources
from tests.conftest import POSTGRES_ADMIN_URL, _asyncpg_dsn

ANY = ""  # a prefix every statement has: whatever statement comes next


def _terminate(pid: int) -> None:
    async def kill() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=5)
        try:  # waits (up to 5 s) until the backend is gone
            assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await conn.close()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(kill())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run)  # the hook is synchronous: its own loop
    thread.start()
    thread.join()
    if failure:  # pragma: no cover
        raise failure[0]


@contextmanager
def backend_killed_before(resources: Resources, *prefixes: str) -> Iterator[list[str]]:
    """PostgreSQL terminates the connection about to run a statement starting with each of
    ``prefixes`` (in that order, once each); yields the prefixes it killed for."""
    pending = list(prefixes)  # ANY: whatever statement comes next
    killed: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if pending and statement.startswith(pending[0]):
            killed.append(pending.pop(0))
            _terminate(conn.connection.driver_connection.get_server_pid())

    engine = resources.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield killed
    finally:
        event.remove(engine, "before_cursor_execute", before)
