"""The previous release stays ready on a newer schema (a rolling deploy migrates first):
readiness accepts the revision it expects or a newer one, never an older one."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from storefront.cli import run_migrations
from storefront.kit.db import create_engine
from storefront.migrating import scripts
from storefront.migration_head import head_revision, schema_compatible
from tests.conftest import make_settings


def test_revisions_are_numbered_in_sequence() -> None:
    """What makes "newer" readable from a revision id alone."""
    for script in scripts().walk_revisions():
        assert script.revision.isdigit(), script.revision
        assert len(script.revision) == 4, script.revision
        down = script.down_revision
        if down is None:
            assert script.revision == "0001"
        else:
            assert isinstance(down, str)
            assert int(script.revision) == int(down) + 1, script.revision


def test_compatible_means_the_same_or_a_newer_revision() -> None:
    assert schema_compatible("0013", "0013")
    assert schema_compatible("0014", "0013")
    assert not schema_compatible("0012", "0013")
    assert not schema_compatible(None, "0013")
    assert not schema_compatible("abc123", "0013")


async def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("revision", "ready"), [("9999", True), ("0001", False)])
async def test_readiness_on_a_newer_schema_stays_up(
    tmp_path: Path, revision: str, ready: bool
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ahead.db'}"
    await anyio.to_thread.run_sync(lambda: run_migrations(database_url=url))
    await _set_revision(url, revision)  # as if a newer (or older) release had migrated it
    app = create_app(make_settings(url))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    schema = response.json()["checks"]["schema"]
    if ready:
        assert response.status_code == 200
        assert schema == {
            "status": "up",
            "revision": revision,
            "expected": head_revision(),
            "ahead": True,
        }
    else:
        assert response.status_code == 503
        assert schema["status"] == "down"
