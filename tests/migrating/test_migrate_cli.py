"""`storefront migrate` as an operator runs it: it says what it applied,
"already at head" when there is nothing to do, refuses a downgrade unless asked, and reports
the progress of a data migration that touches every row."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import sqlalchemy as sa

from storefront.cli import run_migrations
from storefront.kit.db import create_engine, utcnow
from storefront.migrating import current_revision, message_of, scripts
from tests.support.servers import CLI, cli_env, run_cli
from tests.vault.test_encryption_migration import users_v2


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_migrate_reports_each_revision_then_says_already_at_head(empty_database: str) -> None:
    env = cli_env(empty_database)
    revisions = list(reversed(list(scripts().walk_revisions())))
    head = revisions[-1].revision

    first = run_cli(["migrate"], env)
    assert "Database at (empty: no revision)" in first
    applied = [line.split()[1] for line in first.splitlines() if line.startswith("  applied ")]
    assert applied == [r.revision for r in revisions]  # every one, in order
    for script in revisions:  # each with its message
        assert f"applied {script.revision}  {message_of(script)}" in first
    assert f"Migrated from (empty: no revision) to {head}" in first

    second = run_cli(["migrate"], env)
    assert f"Already at head ({head}): nothing to do." in second
    assert "applied" not in second


def test_a_downgrade_is_refused_unless_allowed_and_then_reported(empty_database: str) -> None:
    run_migrations(database_url=empty_database)
    head = scripts().get_current_head()
    before = _tables(empty_database)
    env = cli_env(empty_database)

    refused = _cli(["migrate", "0002"], env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "DOWNGRADE" in refused.stderr
    assert "--allow-downgrade" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert current_revision(empty_database) == head
    assert _tables(empty_database) == before

    done = run_cli(["migrate", "0002", "--allow-downgrade"], env)
    undone = [line.split()[1] for line in done.splitlines() if line.startswith("  undone ")]
    later = [r.revision for r in scripts().walk_revisions() if r.revision > "0002"]
    assert undone == later  # newest first, down to (not including) 0002
    assert f"Downgraded from {head} to 0002" in done
    assert current_revision(empty_database) == "0002"
    assert "data_keys" not in _tables(empty_database)

    unknown = _cli(["migrate", "0042"], env)
    assert unknown.returncode == 2
    assert "unknown revision '0042'" in unknown.stderr
    assert current_revision(empty_database) == "0002"


def test_the_sealing_migration_reports_its_progress(empty_database: str) -> None:
    run_migrations("0002", database_url=empty_database)
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "email": f"user{n}@example.com",
            "display_name": f"User {n}",
            "password_hash": "x",
            "is_active": True,
            "is_admin": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(3)
    ]

    async def insert() -> None:
        engine = create_engine(empty_database)
        try:
            async with engine.begin() as conn:
                await conn.execute(users_v2.insert(), rows)
        finally:
            await engine.dispose()

    asyncio.run(insert())
    out = run_cli(["migrate"], cli_env(empty_database))
    assert "Database at 0002" in out
    assert "sealed 3/3 user rows" in out
    assert "sealed 0/0 order rows" in out
    assert out.index("sealed 3/3 user rows") < out.index("applied 0003")


def test_a_database_migrated_by_newer_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'newer.db'}"
    run_migrations(database_url=url)

    async def stamp() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        finally:
            await engine.dispose()

    asyncio.run(stamp())
    done = _cli(["migrate"], cli_env(url))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "revision 9999, which this version of Storefront does not know" in done.stderr
    assert "Traceback" not in done.stderr
    assert current_revision(url) == "9999"


def test_the_audit_commitment_migration_reports_its_progress(tmp_path: Path) -> None:
    from tests.auditlog.test_audit_chain_upgrade import _legacy_rows, audit_v1

    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    run_migrations("0008", database_url=url)
    rows = _legacy_rows()

    async def insert() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(audit_v1.insert(), rows)
        finally:
            await engine.dispose()

    asyncio.run(insert())
    out = run_cli(["migrate"], cli_env(url))
    assert f"committed {len(rows)}/{len(rows)} audit entries" in out
    assert out.index("audit entries") < out.index("applied 0009")
