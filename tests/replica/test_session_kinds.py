"""The two kinds of session (decision 0150), without a replica: mypy tells them apart, and
the embedded default (SQLite, no STOREFRONT_DATABASE_REPLICA_URL) reads through the same code
on its one database, with no LSN to carry."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from storefront.infra.replica import WritePins, format_lsn, parse_lsn
from storefront.kit.db import ReadSession, WriteSession
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.support.apps import running_app
from tests.support.factories import Api, ProductInFactory, shop_with_staff


def needs_a_write_session(session: WriteSession) -> WriteSession:
    return session


def test_mypy_refuses_a_read_session_where_a_write_session_is_asked_for() -> None:
    # mypy --strict runs on the tests with warn_unused_ignores: were a ReadSession accepted
    # here, this ignore would be unused and `make lint` would fail
    def misuse(session: ReadSession) -> object:
        return needs_a_write_session(session)  # type: ignore[arg-type]

    assert misuse.__name__ == "misuse"


@pytest.mark.parametrize(
    ("text_form", "value"),
    [("0/0", 0), ("0/16B3748", 0x16B3748), ("16/B374D848", (0x16 << 32) | 0xB374D848)],
)
def test_lsns_read_and_print_as_postgresql_does(text_form: str, value: int) -> None:
    assert parse_lsn(text_form) == value
    assert format_lsn(value) == text_form


@pytest.mark.parametrize("bad", [None, "", "x", "1/", "/1", "1/2/3", "123456789/0", "-1/0"])
def test_anything_else_asks_for_no_lsn(bad: str | None) -> None:
    assert parse_lsn(bad) == 0


def test_a_pin_keeps_the_newest_lsn_until_it_expires() -> None:
    pins = WritePins(ttl=60, max_entries=2)
    pins.pin("a", 10)
    pins.pin("a", 5)  # an older write answered late never lowers the pin
    assert pins.get("a") == 10
    pins.pin("b", 1)
    pins.pin("c", 1)  # bounded: the oldest pin goes
    assert (pins.get("a"), pins.get("c")) == (0, 1)
    expired = WritePins(ttl=0.001)
    expired.pin("a", 10)
    time.sleep(0.01)
    assert expired.get("a") == 0
    assert WritePins(ttl=0).get("a") == 0


def test_a_replica_needs_a_postgresql_primary_and_url(tmp_path: Path) -> None:
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValidationError, match="needs a PostgreSQL STOREFRONT_DATABASE_URL"):
        Settings(database_url=sqlite, database_replica_url="postgresql://h/db")
    with pytest.raises(ValidationError, match="must be a PostgreSQL URL"):
        Settings(database_url="postgresql://h/db", database_replica_url=sqlite)
    settings = Settings(database_url="postgresql://h/db", database_replica_url="postgres://r/db")
    assert settings.database_replica_url == "postgresql+asyncpg://r/db"
    assert (
        Settings(database_url="postgresql://h/db", database_replica_url="").database_replica_url
        is None
    )


async def test_the_embedded_default_reads_and_writes_its_one_database(sqlite_url: str) -> None:
    async with running_app(make_settings(sqlite_url)) as app:
        resources: Resources = app.state.resources
        assert not resources.reads.enabled
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            _, staff, shop = await shop_with_staff(Api(c, resources))
            body = ProductInFactory.build().model_dump()
            r = await c.post(f"/api/v1/shops/{shop['id']}/products", json=body, headers=staff.auth)
            assert r.status_code == 201, r.text
            assert "storefront-lsn" not in r.headers  # no replica: nothing to wait for
            got = await c.get(f"/api/v2/shops/{shop['id']}/products/{r.json()['id']}")
            assert got.status_code == 200, got.text
            health = (await c.get("/healthz")).json()
            assert "db_replica" not in health["components"]
        async with await resources.reads.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
