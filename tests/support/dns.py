"""A real DNS server for tests: dnslib's server on a free loopback port (UDP and TCP), serving
a zone the test writes and rewrites, and counting the questions it is asked."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import (  # type: ignore[import-untyped]
    BaseResolver,
    DNSHandler,
    DNSLogger,
    DNSServer,
)


class Zone(BaseResolver):  # type: ignore[misc]
    """Records from zone-file lines (``"api.test. 30 IN A 192.0.2.1"``). A name with no
    record at all is NXDOMAIN; an SRV answer carries its targets' addresses in the additional
    section (as Kubernetes and Consul do) unless ``glue`` is off; ``failing`` answers SERVFAIL
    to everything."""

    def __init__(self, text: str = "", *, glue: bool = True) -> None:
        self._lock = threading.Lock()
        self._records: list[RR] = []
        self.glue = glue
        self.failing = False
        self.asked: Counter[tuple[str, str]] = Counter()  # (name, type) -> questions
        self.load(text)

    def load(self, text: str) -> None:
        """Replace every record with those of ``text`` (one per line, each naming its owner:
        leading blanks are ignored, not read as "the previous owner")."""
        lines = "\n".join(line.strip() for line in text.splitlines() if line.strip())
        records = RR.fromZone(lines) if lines else []
        with self._lock:
            self._records = records

    def questions(self, name: str, rtype: str) -> int:
        with self._lock:
            return self.asked[(name.rstrip(".").lower() + ".", rtype)]

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.asked[(str(qname).lower(), qtype)] += 1
            if self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            named = [rr for rr in self._records if rr.rname == qname]
            if not named:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rr in named:
                if QTYPE[rr.rtype] == qtype:
                    reply.add_answer(rr)
                    if qtype == "SRV" and self.glue:
                        for extra in self._records:
                            if extra.rname == rr.rdata.target and QTYPE[extra.rtype] in (
                                "A",
                                "AAAA",
                            ):
                                reply.add_ar(extra)
        return reply


class _Quiet(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class _Handler(DNSHandler):  # type: ignore[misc]
    """Truncates as a real server does: TC set, the question kept (dnslib's own truncation
    drops the question, which a client rightly refuses as not an answer to it)."""

    udp_limit = 0  # bytes; 0: no limit (dnslib's own ``udplen`` stays 0)

    def get_reply(self, data: bytes) -> bytes:
        rdata: bytes = super().get_reply(data)
        if self.protocol == "udp" and self.udp_limit and len(rdata) > self.udp_limit:
            request = DNSRecord.parse(data)
            truncated = request.reply()
            truncated.header.tc = 1
            rdata = truncated.pack()
        return rdata


class DnsServer:
    """``with DnsServer(zone) as dns:`` serves ``zone`` on 127.0.0.1:``dns.port``."""

    def __init__(self, zone: Zone, *, udp_limit: int = 0) -> None:
        """``udp_limit``: answers longer than this many bytes are truncated over UDP (TC
        set), as a server does past the client's buffer, so the client must ask over TCP."""
        self.zone = zone
        self._handler = type("Handler", (_Handler,), {"udp_limit": udp_limit})
        self._servers: list[DNSServer] = []

    def __enter__(self) -> DnsServer:
        for _ in range(20):  # a UDP port whose TCP twin is free too
            udp = DNSServer(
                self.zone, address="127.0.0.1", port=0, logger=_Quiet(), handler=self._handler
            )
            port = int(udp.server.server_address[1])
            try:
                tcp = DNSServer(
                    self.zone, address="127.0.0.1", port=port, tcp=True, logger=_Quiet()
                )
            except OSError:
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:  # polling often: stopping takes no half second
                server.thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                )
                server.thread.start()
            return self
        raise RuntimeError("no free loopback port for the DNS server")

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    @property
    def settings(self) -> dict[str, Any]:
        """The discovery settings that ask this server."""
        return {"nameservers": ["127.0.0.1"], "nameserver_port": self.port}
