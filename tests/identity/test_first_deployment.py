"""A first production deployment as an operator does it: `secrets generate`,
`migrate`, `admin create`; and demo data, with its published passwords, never in production."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from select import select as wait_readable

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from rich.console import Console
from sqlalchemy import func, select

from storefront.admin_cli import production_secrets
from storefront.app import create_app
from storefront.auth.passwords import PasswordHasher
from storefront.identity.models import User
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.seed import DemoDataRefused, seed
from storefront.settings import Settings
from storefront.vault.config import build_vault
from tests.conftest import make_settings, migrated_sqlite
from tests.support.factories import PASSWORD, V1
from tests.support.servers import CLI, cli_env, run_cli

ADMIN = "root@ops.example.com"
# what production requires besides the secrets: chosen by the operator, not generated
NOT_SECRETS = {"STOREFRONT_DEPLOYMENT_NAME": "shop-prod"}


def _cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _env_file(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, line
            values[name] = value
    return values


def _user_count(url: str) -> int:
    async def count() -> int:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return int(
                    (await conn.execute(select(func.count()).select_from(User))).scalar_one()
                )
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_generated_secrets_are_accepted_by_production_settings_and_new_each_run(
    tmp_path: Path,
) -> None:
    env = cli_env("sqlite:///unused.db")
    first, second = (run_cli(["secrets", "generate"], env) for _ in range(2))
    path = tmp_path / "storefront.env"
    values = _env_file(first)
    assert set(values) == {
        "STOREFRONT_AUTH__JWT_SECRET",
        "STOREFRONT_PRIVACY__MASTER_KEYS",
        "STOREFRONT_PRIVACY__BLIND_INDEX_KEY",
    }
    # the env file, read as an env file, makes production settings that validate
    path.write_text(first + "".join(f"{k}={v}\n" for k, v in NOT_SECRETS.items()))
    settings = Settings(_env_file=path, environment="production")
    assert settings.auth.jwt_secret.get_secret_value() == values["STOREFRONT_AUTH__JWT_SECRET"]
    assert settings.privacy.master_keys is not None
    assert settings.privacy.blind_index_key is not None
    again = _env_file(second)
    assert all(again[name] != values[name] for name in values)  # fresh every run
    assert len(set(values.values())) == len(values)


def test_first_deployment_secrets_migrate_admin_create_and_the_admin_signs_in(
    empty_database: str,
) -> None:
    secrets = _env_file(run_cli(["secrets", "generate"], cli_env(empty_database)))
    env = cli_env(empty_database, STOREFRONT_ENVIRONMENT="production", **secrets, **NOT_SECRETS)
    run_cli(["migrate"], env)
    created = _cli(["admin", "create", ADMIN, "--password-stdin"], env, stdin=f"{PASSWORD}\n")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Created platform admin" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr

    # the same email again: refused, nothing changes
    again = _cli(["admin", "create", ADMIN], env, stdin="another-long-password-2026\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert _user_count(empty_database) == 1

    # the admin signs in (the app with the same keys) and reads the platform audit log,
    # where their creation is recorded
    settings = make_settings(
        empty_database,
        auth={
            "jwt_secret": secrets["STOREFRONT_AUTH__JWT_SECRET"],
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
            "argon2_parallelism": 1,
        },
        privacy={
            "master_keys": secrets["STOREFRONT_PRIVACY__MASTER_KEYS"],
            "blind_index_key": secrets["STOREFRONT_PRIVACY__BLIND_INDEX_KEY"],
        },
    )

    async def sign_in() -> list[str]:
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                login = await client.post(
                    f"{V1}/auth/login", json={"email": ADMIN, "password": PASSWORD}
                )
                assert login.status_code == 200, login.text
                auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
                events = await client.get(f"{V1}/admin/audit-events", headers=auth)
                assert events.status_code == 200, events.text
                return [item["action"] for item in events.json()["items"]]

    assert "user.admin_created" in asyncio.run(sign_in())


def test_admin_password_is_never_an_argument_and_follows_the_policy(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "admin.db")
    env = cli_env(url)
    for args in (
        ["admin", "create", ADMIN, PASSWORD],
        ["admin", "create", ADMIN, "--password", PASSWORD],
        ["admin", "create", ADMIN, f"--password={PASSWORD}"],
    ):
        done = _cli(args, env, stdin=f"{PASSWORD}\n")
        assert done.returncode == 2, done.stdout + done.stderr  # a usage error
        assert "Traceback" not in done.stderr
    weak = _cli(["admin", "create", ADMIN, "--password-stdin"], env, stdin="password\n")
    assert weak.returncode == 1
    assert "at least" in weak.stderr
    empty = _cli(["admin", "create", ADMIN], env, stdin="")
    assert empty.returncode == 1
    assert "no password" in empty.stderr
    assert _user_count(url) == 0


@pytest.mark.parametrize("flags", [[], ["--if-empty"]], ids=["plain", "if-empty"])
@pytest.mark.parametrize("secrets_set", [True, False], ids=["secrets-set", "secrets-missing"])
def test_seed_refuses_production_whatever_the_flags(
    tmp_path: Path, flags: list[str], secrets_set: bool
) -> None:
    url = migrated_sqlite(tmp_path / "prod.db")
    secrets = production_secrets() if secrets_set else {}
    not_secrets = NOT_SECRETS if secrets_set else {}
    env = cli_env(url, STOREFRONT_ENVIRONMENT="production", **secrets, **not_secrets)
    done = _cli(["seed", *flags], env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "never seeded in production" in done.stderr
    assert "storefront admin create" in done.stderr
    assert "storefront-demo-2026" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert _user_count(url) == 0


def test_the_seed_function_refuses_production_settings(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "prod.db")
    secrets = production_secrets()
    production = Settings(
        environment="production",
        deployment_name=NOT_SECRETS["STOREFRONT_DEPLOYMENT_NAME"],
        database_url=url,
        auth={"jwt_secret": secrets["STOREFRONT_AUTH__JWT_SECRET"]},
        privacy={
            "master_keys": secrets["STOREFRONT_PRIVACY__MASTER_KEYS"],
            "blind_index_key": secrets["STOREFRONT_PRIVACY__BLIND_INDEX_KEY"],
        },
    )

    async def attempt() -> None:
        engine = create_engine(url)
        try:
            with pytest.raises(DemoDataRefused):
                await seed(
                    create_sessionmaker(engine),
                    PasswordHasher(time_cost=1, memory_kib=1024, parallelism=1),
                    Console(quiet=True),
                    settings=production,
                    vault=build_vault(production),
                    cache=None,
                )
        finally:
            await engine.dispose()

    asyncio.run(attempt())
    assert _user_count(url) == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_skips_the_seed_step_in_production(tmp_path: Path) -> None:
    """`make run` still works for production operators: migrate, a line instead of the seed,
    serve (the commands replaced by a stub that prints them)."""
    stub = tmp_path / "storefront"
    stub.write_text('#!/bin/sh\necho "storefront $*"\n')
    stub.chmod(0o755)
    root = Path(__file__).resolve().parents[2]

    def make_run(**env: str) -> str:
        done = subprocess.run(  # noqa: S603 - make, on our own Makefile
            ["make", "-s", "-o", "install", "run", f"BIN={tmp_path}"],  # noqa: S607
            cwd=root,
            env={**cli_env("sqlite:///unused.db"), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    production = make_run(STOREFRONT_ENVIRONMENT="production").splitlines()
    assert production[0] == "storefront migrate"
    assert "not seeding demo data" in production[1]
    assert production[2:] == ["storefront serve"]
    assert "storefront seed --if-empty" in make_run().splitlines()


@pytest.mark.parametrize("flags", [[], ["--password-stdin"]], ids=["prompt", "password-stdin"])
def test_admin_create_asks_for_the_password_hidden_and_twice_at_a_terminal(
    tmp_path: Path, flags: list[str]
) -> None:
    """At a terminal even --password-stdin asks through the hidden prompt: a line read from
    the terminal would be echoed."""
    pty = pytest.importorskip("pty")
    url = migrated_sqlite(tmp_path / "tty.db")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal of its own (never back into pytest)
        try:
            os.execve(CLI[0], [*CLI, "admin", "create", ADMIN, *flags], cli_env(url))  # noqa: S606
        finally:
            os._exit(127)
    seen = b""

    def read_until(token: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while token not in seen and time.monotonic() < deadline:
            if wait_readable([fd], [], [], 0.5)[0]:
                try:
                    seen += os.read(fd, 1024)
                except OSError:  # the child has exited
                    break
        assert token in seen, seen

    # "Password:" then getpass's own " " once echo is off: type only after both
    read_until(b"Password: ")
    os.write(fd, f"{PASSWORD}\n".encode())
    read_until(b"Repeat for confirmation: ")
    os.write(fd, f"{PASSWORD}\n".encode())
    read_until(b"Created platform admin")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PASSWORD.encode() not in seen  # never echoed
    assert _user_count(url) == 1
