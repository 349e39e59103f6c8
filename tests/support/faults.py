"""A fault-injecting TCP proxy for tests: a free loopback port in front of a real server
(HTTP, SMTP...) that can pass traffic through, add latency, refuse connections, reset them,
or accept and never answer (a hung peer). It counts the connections that reach it, so a
test can show that a refused call never left the process.

It runs on the caller's event loop. Faults apply to connections accepted after the change;
``refuse`` stops listening (the port answers RST to a SYN: connection refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from enum import StrEnum

from tests.support.servers import free_port


class Fault(StrEnum):
    NONE = "none"  # pass through
    LATENCY = "latency"  # pass through, each chunk from the server delayed by ``latency``
    REFUSE = "refuse"  # not listening: connection refused
    RESET = "reset"  # accept, then reset the connection (RST) at once
    HANG = "hang"  # accept, read what the client sends, never answer


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.fault = Fault.NONE
        self.latency = 0.0
        self.accepted = 0  # connections that reached the proxy
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._hung: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def set(self, fault: Fault, *, latency: float = 0.0) -> None:
        """Inject ``fault`` from now on (``Fault.NONE``: heal). Connections already open
        are cut, so a pooled client connection does not hide the change."""
        self.fault, self.latency = fault, latency
        await self._close()
        if fault is not Fault.REFUSE:
            await self._listen()

    async def wait_accepted(self, count: int, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while self.accepted < count:
            assert time.monotonic() < deadline, f"{self.accepted} of {count} connections"
            await asyncio.sleep(0.02)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._hung):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        fault = self.fault
        if fault is Fault.RESET:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self._writers.discard(writer)
            return
        if fault is Fault.HANG:
            task = asyncio.current_task()
            assert task is not None
            self._hung.add(task)
            try:
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    while await reader.read(65536):
                        pass
                    await asyncio.Event().wait()  # the client closed its side: still silent
            finally:
                self._hung.discard(task)
                self._writers.discard(writer)
                writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(upstream_writer)
        delay = self.latency if fault is Fault.LATENCY else 0.0
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer, 0.0),
                self._pipe(upstream_reader, writer, delay),
            )
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)  # the fault itself, not synchronisation
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
