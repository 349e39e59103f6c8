"""A Redis master, its replica and three sentinels of a test's own, on free loopback ports,
tuned to fail over in about a second (down-after 300 ms, failover-timeout 1 s)."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from tests.support.servers import free_port

SERVICE = "storefront"


def _wait(check: object, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, RedisError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {within} s")


def _ping(port: int) -> bool:
    client = SyncRedis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


class SentinelGroup:
    """``start()`` runs a master and a replica (no persistence) and three sentinels watching
    them as ``storefront``; ``kill_master()`` SIGKILLs whichever server is the master now."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.binary = binary
        self.directory = directory
        self.server_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port(), free_port(), free_port()]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _spawn(self, port: int, args: list[str]) -> None:
        self.procs[port] = subprocess.Popen(  # noqa: S603 - a fixed local binary
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )

    def _server(self, port: int, replica_of: int | None) -> None:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory)]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, args)

    def start(self) -> None:
        master, replica = self.server_ports
        self._server(master, None)
        self._server(replica, master)
        _wait(lambda: _ping(master) and _ping(replica), "the servers did not start")
        _wait(
            lambda: SyncRedis(port=replica).info("replication")["master_link_status"] == "up",
            "the replica did not sync",
        )
        # each sentinel told of the replica and of the others up front: discovering them
        # takes a sentinel up to 10 s (INFO every 10 s, hellos every 2 s)
        ids = {port: secrets.token_hex(20) for port in self.sentinel_ports}
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            others = "".join(
                f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other} {ids[other]}\n"
                for other in self.sentinel_ports
                if other != port
            )
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\nsentinel myid {ids[port]}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 300\n"
                f"sentinel failover-timeout {SERVICE} 1000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                f"sentinel known-replica {SERVICE} 127.0.0.1 {replica}\n{others}"
            )
            self._spawn(port, [str(conf), "--sentinel"])
        # every sentinel has found the replica and the other sentinels: a failover can start
        _wait(self._ready, "the sentinels did not settle")

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            client = SyncRedis(port=port, socket_timeout=0.5)
            try:
                state: dict[str, Any] = client.sentinel_master(SERVICE)  # type: ignore[assignment]
            finally:
                client.close()
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return False
        return True

    def named_masters(self) -> list[int]:
        """The master's port according to each sentinel."""
        named = []
        for port in self.sentinel_ports:
            client = SyncRedis(port=port, socket_timeout=0.5)
            try:
                addr: tuple[str, int] = client.sentinel_get_master_addr_by_name(SERVICE)  # type: ignore[assignment]
                _host, master = addr
            finally:
                client.close()
            named.append(int(master))
        return named

    def master_port(self) -> int:
        """The master's port as the sentinels say it (all of them agreeing)."""
        seen = set(self.named_masters())
        assert len(seen) == 1, f"the sentinels disagree: {seen}"
        return seen.pop()

    def kill_master(self) -> int:
        """SIGKILL the master; returns its port."""
        port = self.master_port()
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)
        return port

    def wait_for_new_master(self, old: int, within: float = 30.0) -> int:
        """Block until every sentinel names a master other than ``old``; returns its port."""

        def promoted() -> bool:
            named = set(self.named_masters())
            if old in named or len(named) != 1:
                return False
            client = SyncRedis(port=named.pop(), socket_timeout=0.5)
            try:
                return bool(client.info("replication")["role"] == "master")
            finally:
                client.close()

        _wait(promoted, "no new master was promoted", within)
        return self.master_port()

    def pause_sentinel(self, port: int) -> None:
        """SIGSTOP a sentinel: the kernel still accepts connections, nothing answers."""
        self.procs[port].send_signal(signal.SIGSTOP)

    def resume_sentinel(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        self.procs.clear()
