"""What an operator reads when a command cannot start: a few lines naming
the environment variable and the fix, exit code 2 (configuration) or 3 (a dependency is
unreachable), and never a traceback. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, require_or_skip
from tests.support.servers import CLI, cli_env, free_port

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        CLI + args,
        env=env,
        input="a-long-enough-password-2026\n",  # `admin create` reads one from stdin
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_explained(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) < 10, output
    for needle in needles:
        assert needle in done.stderr, output


def _pg(
    *, username: str | None = None, password: str | None = None, database: str | None = None
) -> str:
    """The admin URL with the parts given replaced (``URL.set`` keeps a part given None)."""
    return (
        make_url(POSTGRES_ADMIN_URL)
        .set(drivername="postgresql", username=username, password=password, database=database)
        .render_as_string(hide_password=False)
    )


CONFIG_CASES = {
    "not-an-integer": ({"STOREFRONT_WORKERS": "many"}, "STOREFRONT_WORKERS"),
    "nested-out-of-range": (
        {"STOREFRONT_DATABASE__POOL_SIZE": "0"},
        "STOREFRONT_DATABASE__POOL_SIZE",
    ),
    "unknown-url-scheme": (
        {"STOREFRONT_DATABASE_URL": "mysql://u:p@db/shop"},
        "STOREFRONT_DATABASE_URL",
    ),
    "production-secrets-missing": (
        {"STOREFRONT_ENVIRONMENT": "production"},
        "STOREFRONT_AUTH__JWT_SECRET",
    ),
    "bad-master-key": (
        {"STOREFRONT_PRIVACY__MASTER_KEYS": "v1:tooshort"},
        "STOREFRONT_PRIVACY__MASTER_KEYS",
    ),
    "nested-group-not-json": ({"STOREFRONT_DATABASE": "{oops"}, "STOREFRONT_DATABASE"),
    # found in review: these two started `serve` into a traceback (redis-py's and the
    # broker factory's ValueError inside the lifespan), and every other command ignored them
    "redis-url-not-a-url": ({"STOREFRONT_REDIS_URL": "notaurl"}, "STOREFRONT_REDIS_URL"),
    "broker-url-scheme": ({"STOREFRONT_BROKER_URL": "ftp://u:p@mq/"}, "STOREFRONT_BROKER_URL"),
    "metrics-port-is-the-api-port": (
        {"STOREFRONT_PORT": "9101", "STOREFRONT_OBSERVABILITY__METRICS_PORT": "9101"},
        "STOREFRONT_OBSERVABILITY__METRICS_PORT",
    ),
    # events go to RabbitMQ only: a redis:// URL here silently meant in-process delivery
    "events-broker-not-amqp": (
        {"STOREFRONT_EVENTS__BROKER_URL": "redis://u:p@127.0.0.1:6379/0"},
        "STOREFRONT_EVENTS__BROKER_URL",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_configuration_error_is_one_clear_message(case: str, tmp_path: Path) -> None:
    extra, variable = CONFIG_CASES[case]
    env = {**cli_env(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"), **extra}
    done = _run(["migrate"], env)
    _assert_explained(done, EXIT_CONFIG, variable)
    assert "u:p@" not in done.stderr  # a URL's password is never printed


COMMANDS = [
    ["serve"],
    ["migrate"],
    ["seed"],
    ["worker"],
    ["admin", "create", "ops@example.com"],
    ["keys", "list"],
    ["audit", "verify"],
    ["retention", "run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_every_command_explains_a_configuration_error(command: list[str], tmp_path: Path) -> None:
    env = cli_env(
        f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        STOREFRONT_WORKERS="0",
        STOREFRONT_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    _assert_explained(_run(command, env), EXIT_CONFIG, "STOREFRONT_WORKERS")


# serve and worker start without their database and report it (readiness), so not here
DATABASE_COMMANDS = [c for c in COMMANDS if c[0] not in {"serve", "worker"}]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: "-".join(c))
def test_every_command_explains_an_unreachable_database(command: list[str]) -> None:
    url = f"postgresql://storefront:secret-pw@127.0.0.1:{free_port()}/storefront"
    done = _run(command, cli_env(url))
    _assert_explained(done, EXIT_UNAVAILABLE, "STOREFRONT_DATABASE_URL", "connection refused")
    assert "secret-pw" not in done.stderr


def test_an_unknown_database_host_is_named() -> None:
    url = "postgres://storefront@db.invalid:5432/storefront"
    done = _run(["migrate"], cli_env(url))
    _assert_explained(done, EXIT_UNAVAILABLE, "STOREFRONT_DATABASE_URL", "db.invalid")


@pytest.mark.postgres
def test_refused_credentials_and_a_missing_database_are_named(
    postgres_unavailable: str | None,
) -> None:
    require_or_skip(postgres_unavailable)
    # the local server trusts every password of a known role: an unknown role is refused
    bad_user = _pg(username=f"nobody_{uuid.uuid4().hex[:8]}", password="pw")
    done = _run(["migrate"], cli_env(bad_user))
    _assert_explained(done, EXIT_UNAVAILABLE, "STOREFRONT_DATABASE_URL", "refused the credentials")
    missing = _pg(database=f"storefront_missing_{uuid.uuid4().hex[:8]}")
    done = _run(["migrate"], cli_env(missing))
    _assert_explained(done, EXIT_UNAVAILABLE, "does not exist", "createdb")


def test_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    done = _run(["keys", "list"], cli_env(f"sqlite:///{tmp_path / 'new.db'}"))
    _assert_explained(done, EXIT_UNAVAILABLE, "not migrated", "storefront migrate")


def test_plain_database_urls_use_the_async_driver(empty_database: str) -> None:
    """postgres:// and postgresql:// (as hosting providers hand them out) and sqlite://."""
    url = make_url(empty_database)
    plain = "postgres" if url.get_backend_name() == "postgresql" else "sqlite"
    done = _run(["migrate"], cli_env(empty_database.replace(url.drivername, plain, 1)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied 0001" in done.stdout


def test_a_misspelt_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    env = cli_env(
        f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
        STOREFRONT_DATABSE_URL="postgresql://db/shop",
        STOREFRONT_TEST_SOMETHING="1",  # the test suite's own variables are not settings
    )
    done = _run(["secrets", "generate"], env)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 1, done.stderr
    assert "STOREFRONT_DATABSE_URL" in warnings[0]
    assert "did you mean STOREFRONT_DATABASE_URL?" in warnings[0]


def test_an_unusable_sqlite_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = _run(["migrate"], cli_env(f"sqlite:///{blocker / 'storefront.db'}"))
    _assert_explained(done, EXIT_UNAVAILABLE, "STOREFRONT_DATABASE_URL", "SQLite")


@pytest.mark.parametrize(
    "command", [["serve"], ["worker"], ["admin", "create", "ops@example.com"]], ids=lambda c: c[0]
)
def test_an_unreadable_master_key_file_is_explained(command: list[str], tmp_path: Path) -> None:
    env = cli_env(
        f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
        STOREFRONT_PRIVACY__MASTER_KEY_FILE=str(tmp_path / "missing-keys.json"),
        STOREFRONT_BROKER_URL="redis://127.0.0.1:6379/0",
        STOREFRONT_PORT=str(free_port()),
    )
    _assert_explained(_run(command, env), EXIT_CONFIG, "STOREFRONT_PRIVACY__MASTER_KEY_FILE")
