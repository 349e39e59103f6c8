"""Alembic environment: async engine, same URL the app uses, batch mode on SQLite."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storefront.models import metadata
from storefront.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Postgres: never wait long for a lock in a migration (fail, retry later; don't block traffic)
LOCK_TIMEOUT = "5s"


def _url() -> str:
    from storefront.kit.db import normalise_database_url

    url = config.attributes.get("database_url") or get_settings().database_url
    return normalise_database_url(str(url))  # postgres:// -> postgresql+asyncpg://


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Objects that exist on one dialect only (``info["dialects"]``) are compared there only."""
    dialects = getattr(obj, "info", {}).get("dialects")
    if dialects is None and compare_to is not None:
        dialects = getattr(compare_to, "info", {}).get("dialects")
    return dialects is None or context.get_bind().dialect.name in dialects


def _configure(connection: Connection) -> None:
    # `storefront migrate` reports each revision as it is applied (storefront/migrating.py)
    on_version_apply = config.attributes.get("on_version_apply")
    context.configure(
        on_version_apply=on_version_apply or (),
        include_object=_include_object,
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Batch mode recreates a table (copy, drop, rename): with foreign keys on, dropping the
    old copy of a parent table (users) would fire its children's ON DELETE actions (orders'
    customer_id SET NULL). Set outside any transaction (SQLite ignores it inside one)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def _run_sync(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        connection.commit()
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _sqlite_foreign_keys(connection, on=False)
    _configure(connection)
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.commit()
            _sqlite_foreign_keys(connection, on=True)


async def run_async() -> None:
    from storefront.kit.db import create_engine

    url = _url()
    if url.startswith("sqlite"):
        engine = create_engine(url)
    else:
        engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_url().startswith("sqlite"),
        # as online: one transaction per revision (what `make migration-lint` reads per revision)
        transaction_per_migration=True,
    )
    if _url().startswith("postgresql"):
        context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")  # as online (_run_sync)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        _configure(existing)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())
