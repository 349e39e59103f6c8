"""Migrations: the stairway (upgrade, downgrade, upgrade for every revision) and drift."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storefront.cli import migrations_dir
from storefront.kit.db import create_engine
from storefront.models import metadata
from storefront.partitioning import OLD, PARTITIONS, TABLES, partition_name

# not in the models: the hash partitions of the partitioned tables (their parent is), and the
# tables the swap (0020) keeps in step for a rollback until its contract drops them
NOT_MODELS = {
    *(partition_name(t, i) for t in TABLES for i in range(PARTITIONS)),
    *(f"{t}{OLD}" for t in TABLES),
}


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["configure_logging"] = False
    cfg.attributes["database_url"] = url
    return cfg


def _revisions(cfg: Config) -> list[Script]:
    return list(reversed(list(ScriptDirectory.from_config(cfg).walk_revisions())))


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        finally:
            await engine.dispose()
        return names - {"alembic_version"}

    return asyncio.run(read())


def _drift(url: str) -> list[object]:
    def diff(conn: Connection) -> list[object]:
        def include(obj: Any, name: Any, type_: str, reflected: bool, _other: Any) -> bool:
            if type_ == "table" and reflected and name in NOT_MODELS:
                return False
            # PostgreSQL's own per-partition rows of a key that references a partitioned
            # table (one for each of its partitions, derived from the one the models declare)
            if (
                type_ == "foreign_key_constraint"
                and reflected
                and obj.referred_table.name in NOT_MODELS
            ):
                return False
            dialects = getattr(obj, "info", {}).get("dialects")
            return dialects is None or conn.dialect.name in dialects

        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(ctx, metadata))

    async def read() -> list[object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_stairway(empty_database: str) -> None:
    """Each revision upgrades, downgrades cleanly and upgrades again."""
    cfg = _config(empty_database)
    revisions = _revisions(cfg)
    assert revisions, "no migrations found"
    for revision in revisions:
        command.upgrade(cfg, revision.revision)
        after_upgrade = _tables(empty_database)
        command.downgrade(cfg, revision.down_revision or "base")  # type: ignore[arg-type]
        command.upgrade(cfg, revision.revision)
        assert _tables(empty_database) == after_upgrade
    command.downgrade(cfg, "base")
    assert _tables(empty_database) == set()


def test_migrations_match_models(empty_database: str) -> None:
    """Head has exactly the tables, columns and indexes the models declare."""
    command.upgrade(_config(empty_database), "head")
    assert _tables(empty_database) - NOT_MODELS == {t.name for t in metadata.sorted_tables}
    assert _drift(empty_database) == []
