"""The one outgoing HTTP client of a process (aiohttp), guarded against SSRF and traced.

Everything the service sends to the outside world over HTTP (today: webhooks) goes through
:class:`OutboundClient`: one connection pool per process, created lazily inside the running
event loop and closed by the lifespan (or the worker) on shutdown.

Server-side request forgery: a target URL is chosen by a user, so by default the client
refuses every address that is not globally routable (loopback, private ranges, link-local —
which includes cloud metadata endpoints at 169.254.169.254 — multicast, reserved). The check
is made on the addresses the connection will actually use (the resolver below), not on the
name, so a DNS name that resolves to 10.0.0.5 is refused as surely as the literal; redirects
are never followed. ``allow_private_targets`` lifts this for development and tests.

Tracing: when tracing is on, every request gets an OpenTelemetry client span (the aiohttp
instrumentation's trace config) and carries ``traceparent``, as a child of the current span
(a job's span, for webhooks).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class OutboundRefused(Exception):
    """The target is not allowed (not a public address, or a scheme we don't speak)."""


def address_allowed(address: str, *, allow_private: bool) -> bool:
    if allow_private:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver, then refuses non-public addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(result["host"], allow_private=self._allow_private):
                raise OutboundRefused(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, *, allow_private: bool, allow_http: bool) -> None:
    """Refuse a URL the client would never call (scheme, credentials, literal address)."""
    parts = urlsplit(url)
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes:
        raise OutboundRefused(f"the URL must use {' or '.join(sorted(schemes))}")
    if not parts.hostname:
        raise OutboundRefused("the URL has no host")
    if parts.username or parts.password:
        raise OutboundRefused("the URL must not carry credentials")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() in {"localhost", "localhost.localdomain"} and not allow_private:
            raise OutboundRefused("the URL points at this machine") from None
        return
    # aiohttp does not resolve literal addresses, so the resolver never sees them: check here
    if not address_allowed(str(literal), allow_private=allow_private):
        raise OutboundRefused("the URL points at a non-public address")


class OutboundClient:
    def __init__(
        self,
        *,
        user_agent: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        max_connections: int,
        max_connections_per_host: int,
        allow_private_targets: bool,
        allow_http: bool,
    ) -> None:
        self.user_agent = user_agent
        self.timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_seconds
        )
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.allow_private_targets = allow_private_targets
        self.allow_http = allow_http
        self.tracer_provider: TracerProvider | None = None  # set by instrument_runtime
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> None:
        check_url(url, allow_private=self.allow_private_targets, allow_http=self.allow_http)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace_configs: list[aiohttp.TraceConfig] = []
            if self.tracer_provider is not None:
                from opentelemetry.instrumentation.aiohttp_client import create_trace_config

                trace_configs.append(create_trace_config(tracer_provider=self.tracer_provider))
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections_per_host,
                resolver=GuardedResolver(allow_private=self.allow_private_targets),
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                trace_configs=trace_configs,
                headers={"User-Agent": self.user_agent},
                auto_decompress=False,
            )
        return self._session

    async def post(
        self, url: str, *, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """POST ``body``; returns the status and the response headers (the body is dropped).

        Raises :class:`OutboundRefused` for a forbidden target and aiohttp's errors for
        network failures and timeouts.
        """
        self.check(url)
        # a refused resolution raises OutboundRefused straight through aiohttp (it wraps
        # only OSError from a resolver)
        async with self.session().post(
            url, data=body, headers=headers, allow_redirects=False
        ) as response:
            # read (at most) a little of the body so the connection can be reused
            await response.content.read(64 * 1024)
            return response.status, dict(response.headers)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
