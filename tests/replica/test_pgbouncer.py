"""One run through PgBouncer in transaction mode (docs/replica.md, "Pools and PgBouncer"):
with ``?prepared_statement_cache_size=0`` on the URL the engine caches no statement per
connection and names the ones it prepares uniquely, so clients that share PgBouncer's few
server connections, transaction by transaction, never trip over each other's statements."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url

from storefront.resources import Resources
from tests.conftest import make_settings, require_or_skip
from tests.support.apps import running_app
from tests.support.factories import Api, ProductInFactory, shop_with_staff

pytestmark = pytest.mark.postgres
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def pgbouncer(postgres_url: str) -> Iterator[int]:
    """A PgBouncer of this test's own in front of the test primary, transaction pooling with
    3 server connections per database."""
    require_or_skip(None if Path(PGBOUNCER).exists() else "pgbouncer is not installed")
    primary = make_url(postgres_url)
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="sf-pgbouncer-"))
    (directory / "users.txt").write_text(f'"{primary.username}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={primary.host} port={primary.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "users.txt"}
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,statement_timeout
logfile = {directory / "pgbouncer.log"}
"""
    )
    command = [PGBOUNCER, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(directory, "postgres")
        for child in directory.iterdir():
            shutil.chown(child, "postgres")
        command[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "pgbouncer.log").read_text(errors="replace")
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


async def test_the_api_runs_through_pgbouncer_in_transaction_mode(
    postgres_url: str, pgbouncer: int
) -> None:
    url = make_url(postgres_url).set(port=pgbouncer, query={"prepared_statement_cache_size": "0"})
    settings = make_settings(url.render_as_string(hide_password=False), rate_limit_enabled=False)
    async with running_app(settings) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            _, staff, shop = await shop_with_staff(Api(c, resources))
            base = f"/api/v1/shops/{shop['id']}/products"

            async def create() -> int:
                body = ProductInFactory.build().model_dump()
                return (await c.post(base, json=body, headers=staff.auth)).status_code

            async def read() -> int:
                return (await c.get(f"/api/v2/shops/{shop['id']}/products")).status_code

            # many more clients than PgBouncer's 3 server connections, the same statements
            # prepared by all of them
            statuses = await asyncio.gather(*(create() for _ in range(12)))
            statuses += await asyncio.gather(*(read() for _ in range(40)))
            assert set(statuses) == {201, 200}, statuses
            listing = await c.get(f"/api/v2/shops/{shop['id']}/products?limit=50")
            assert len(listing.json()["_embedded"]["products"]) == 12
