"""More start-up refusals (decisions 0126, 0127, 0187, 0188): an in-memory database in
production, `storefront worker` without a broker, a metrics directory that does not exist,
an open proxy range or a plain-HTTP CORS origin in production, a port already in use.
Each runs the real CLI in a subprocess and reads what an operator reads."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import CLI, cli_env, free_port, run_cli

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _assert_config_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == "", done.stdout  # errors go to stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: "), done.stderr
    assert lines[-1].startswith("fix: "), done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def _production_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    generated = run_cli(["secrets", "generate"], cli_env(f"sqlite:///{tmp_path / 'x.db'}"))
    secrets = dict(line.split("=", 1) for line in generated.splitlines() if line and line[0] != "#")
    return cli_env(
        database_url,
        STOREFRONT_ENVIRONMENT="production",
        STOREFRONT_DEPLOYMENT_NAME="shop-prod",
        **secrets,
    )


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite://", "sqlite+aiosqlite:///file::memory:?uri=true"]
)
def test_production_refuses_an_in_memory_database(url: str, tmp_path: Path) -> None:
    done = _run(["migrate"], _production_env(url, tmp_path))
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "STOREFRONT_DATABASE_URL" in done.stderr
    assert "in-memory" in done.stderr


def test_production_accepts_a_database_file(tmp_path: Path) -> None:
    env = _production_env(f"sqlite:///{tmp_path / 'shop.db'}", tmp_path)
    run_cli(["migrate"], env)  # the settings validate and the schema is created
    assert (tmp_path / "shop.db").exists()


def test_worker_without_a_broker_explains_on_stderr(tmp_path: Path) -> None:
    done = _run(["worker"], cli_env(f"sqlite:///{tmp_path / 'w.db'}"))
    _assert_config_error(done, "STOREFRONT_BROKER_URL")


@pytest.mark.parametrize("command", [["serve"], ["worker"]])
def test_a_missing_metrics_directory_is_a_configuration_error(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "metrics"
    env = cli_env(
        f"sqlite:///{tmp_path / 'm.db'}",
        STOREFRONT_BROKER_URL="redis://127.0.0.1:1/0",
        STOREFRONT_PORT="1",  # never reached
    )
    env["PROMETHEUS_MULTIPROC_DIR"] = str(missing)
    done = _run(command, env)
    _assert_config_error(done, "PROMETHEUS_MULTIPROC_DIR", str(missing))
    assert not missing.exists()  # nothing created behind the operator's back


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("STOREFRONT_TRUSTED_PROXIES", "0.0.0.0/0", "0.0.0.0/0"),  # decision 0187
        ("STOREFRONT_TRUSTED_PROXIES", "::/0", "::/0"),
        ("STOREFRONT_CORS_ORIGINS", "https://a.example,http://b.example", "http://b.example"),
    ],
)
def test_production_names_an_open_proxy_range_or_a_plain_http_origin(
    variable: str, value: str, needle: str, tmp_path: Path
) -> None:
    env = _production_env(f"sqlite:///{tmp_path / 'p.db'}", tmp_path)
    done = _run(["serve"], {**env, variable: value, "STOREFRONT_PORT": "1"})  # never reached
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == "", done.stdout  # refused before the banner
    named = [line for line in done.stderr.splitlines() if line.startswith(f"  - {variable} ")]
    assert len(named) == 1, done.stderr  # one line: what is wrong, why, and what to set
    assert needle in named[0]
    assert "must list" in named[0]
    assert done.stderr.strip().splitlines()[-1].startswith("fix: "), done.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process listens on (this test's own socket)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["serve"], "STOREFRONT_PORT"),
        (["serve"], "STOREFRONT_OBSERVABILITY__METRICS_PORT"),
        (["worker"], "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT"),
    ],
    ids=["api-port", "metrics-port", "worker-metrics-port"],
)
def test_a_port_in_use_is_named(
    command: list[str], variable: str, taken_port: int, tmp_path: Path
) -> None:
    """uvicorn logged `[Errno 98] ... address already in use` after the app had started
    and exited 3 naming no setting; a taken metrics port was only a warning."""
    env = cli_env(
        f"sqlite:///{tmp_path / 'p.db'}",
        STOREFRONT_PORT=str(free_port()),
        STOREFRONT_BROKER_URL="redis://127.0.0.1:1/0",  # the worker stops before using it
    )
    env[variable] = str(taken_port)
    done = _run(command, env)
    assert done.returncode == EXIT_UNAVAILABLE, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Application startup" not in done.stderr  # refused before the app started
    error, fix = done.stderr.strip().splitlines()[-2:]
    assert error == (
        f"error: {variable}={taken_port}: 127.0.0.1:{taken_port} is already in use by "
        "another process"
    ), done.stderr
    assert fix.startswith("fix: ")
    assert f"set {variable} to a free port" in fix


def test_a_host_that_is_not_ours_is_named(tmp_path: Path) -> None:
    env = cli_env(
        f"sqlite:///{tmp_path / 'h.db'}",
        STOREFRONT_HOST="192.0.2.1",  # TEST-NET-1: never an address of this machine
        STOREFRONT_PORT=str(free_port()),
    )
    _assert_config_error(_run(["serve"], env), "STOREFRONT_HOST=192.0.2.1")
