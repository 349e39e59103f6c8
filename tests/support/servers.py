"""Servers for tests: free loopback ports, the `storefront` CLI in a subprocess (run a command,
serve, wait until ready, stop), a redis-server of a test's own, and a TCP proxy that cuts a
client off from a real server and lets it back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx2
from redis import Redis as SyncRedis
from redis.exceptions import RedisError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLI = [sys.executable, "-m", "storefront.cli"]


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `storefront` subprocess: this one without any STOREFRONT_* setting,
    the database, cheap password hashing (tests only), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update(
        STOREFRONT_DATABASE_URL=database_url,
        STOREFRONT_AUTH__ARGON2_TIME_COST="1",
        STOREFRONT_AUTH__ARGON2_MEMORY_KIB="1024",
        STOREFRONT_AUTH__ARGON2_PARALLELISM="1",
        STOREFRONT_AUTH__HASHING_NICE="0",  # as make_settings: no wait behind busy workers
        # tests poll /readyz and /healthz several times a second while they wait
        STOREFRONT_PROTECTION__OPERATIONS_RATE="100000/minute",
        **extra,
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> str:
    """Run one `storefront` command to its end; its output, or a failure showing it."""
    done = subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def serve(env: dict[str, str], port: int | None = None) -> tuple[subprocess.Popen[str], str]:
    """`storefront serve` on ``port`` (a free one by default): the process (its output piped,
    as text) and its base URL. Wait for it with :func:`wait_ready`, end it with :func:`stop`."""
    port = port or free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "serve"],
        env={**env, "STOREFRONT_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop(
    proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM, within: float = 30
) -> str:
    """Send ``sig`` and wait; kill it if it has not exited ``within`` seconds. Its output."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def wait_ready(base: str, proc: subprocess.Popen[Any], within: float = 120) -> None:
    """Until ``base``/readyz answers 200. Generous by default: worker processes boot slowly
    on a busy two-core host. Fails at once, with its output, if the process exits."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the server exited before it was ready:\n{output}")
        try:
            if httpx2.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        # a refused connection costs next to nothing: asking often ends the wait sooner
        time.sleep(0.05)
    raise AssertionError("server did not become ready")


class OwnRedis:
    """A throwaway redis-server on a loopback port (no persistence), so a test can stop,
    freeze and start it mid-run."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed local binary
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client = SyncRedis(port=self.port, socket_connect_timeout=0.2)
            try:
                if client.ping():
                    return
            except (OSError, RedisError):  # not up yet
                time.sleep(0.05)
            finally:
                client.close()
        raise AssertionError("redis-server did not start")

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): a server that hangs, keeping its data, its
        connections open and every command unanswered until ``thaw``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it (a crash: its clients see their connections drop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class TcpProxy:
    """Forwards a free loopback port to ``host:port`` (a real Redis, RabbitMQ...).

    ``down()`` stops listening and cuts every open connection, so clients see the server
    vanish (connections refused); ``up()`` listens again on the same port. It runs on the
    caller's event loop.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        await self.up()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.down()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
EMULATOR = os.path.join(os.path.dirname(__file__), "stripe_emulator.py")


class LocalStripe:
    """The localstripe emulator of Stripe's API in a process of its own, on a free loopback
    port, in memory (tests/support/stripe_emulator.py)."""

    SECRET_KEY = "sk_test_localstripe"
    WEBHOOK_SECRET = "whsec_localstripe"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, api_base: str | None = None, **overrides: Any) -> dict[str, Any]:
        """STOREFRONT_PAYMENTS__* for an app that pays through this emulator (or through a
        proxy in front of it, at ``api_base``)."""
        return {
            "api_base": api_base or self.url,
            "secret_key": self.SECRET_KEY,
            "webhook_secret": self.WEBHOOK_SECRET,
            **overrides,
        }

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed local script
            [sys.executable, EMULATOR, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"localstripe exited: {error}")
            try:
                r = httpx2.get(f"{self.url}/v1/balance", auth=(self.SECRET_KEY, ""), timeout=2)
                if r.status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("localstripe did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def payment_intents(self, **metadata: str) -> list[dict[str, Any]]:
        """Every PaymentIntent the emulator holds whose metadata has these values."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            r = httpx2.get(
                f"{self.url}/v1/payment_intents",
                params=params,
                auth=(self.SECRET_KEY, ""),
                timeout=10,
            )
            r.raise_for_status()
            page = r.json()
            found += [
                pi
                for pi in page["data"]
                if all(pi["metadata"].get(k) == v for k, v in metadata.items())
            ]
            if not page["has_more"] or not page["data"]:
                return found
            after = page["data"][-1]["id"]


def start_localstripe() -> LocalStripe:
    """A started emulator; fails the test run under CI when it cannot start, else skips."""
    import pytest

    server = LocalStripe()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and localstripe could not start: {exc}", pytrace=False)
        pytest.skip(f"localstripe could not start: {exc}")
    return server


class ResponseCuttingProxy(TcpProxy):
    """A TcpProxy that, while ``cut_responses`` is set, passes requests through to the
    server but cuts the connection when the answer comes back: the server has acted (a
    payment taken), the client never learns it (a timeout after the provider charged)."""

    cut_responses = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._answer(upstream_reader, writer)
            )
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.cut_responses:
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
