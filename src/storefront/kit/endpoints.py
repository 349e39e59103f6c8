"""Where a dependency listens: an :class:`Endpoint` and the one parser of the forms settings
accept for it (``https://api.stripe.com``, ``http://10.0.0.5:12111/v1``, ``mail.internal:25``,
``[2001:db8::5]:587``). Pure: settings validate with it, service discovery builds with it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "smtp": 25, "smtps": 465}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of a named service: ``host`` (a name or an IP literal, what to connect
    to) and ``port``; ``scheme`` and ``path`` when the service is spoken to by URL.
    ``server_name`` is the DNS name the address was found under (an SRV target), for TLS
    server names and Host headers; None when ``host`` is that name already."""

    host: str
    port: int
    scheme: str | None = None
    path: str = ""
    server_name: str | None = None

    @property
    def netloc(self) -> str:
        """``host:port``, an IPv6 literal in brackets."""
        host = f"[{self.host}]" if _is_ipv6(self.host) else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL (``scheme://host:port/path``, no trailing slash); ValueError for an
        endpoint without a scheme (a bare ``host:port``)."""
        if self.scheme is None:
            raise ValueError(f"{self.netloc} has no scheme: configure the service with URLs")
        return f"{self.scheme}://{self.netloc}{self.path}"

    def __str__(self) -> str:
        return self.url if self.scheme else self.netloc


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def parse_endpoint(text: str, *, default_port: int | None = None) -> Endpoint:
    """``scheme://host[:port][/path]`` or ``host[:port]``; the port defaults to the scheme's
    (http 80, https 443, smtp 25, smtps 465), else to ``default_port``. ValueError (naming
    the entry) for anything else: no host, a query, credentials, an unknown port."""
    entry = text.strip()
    with_scheme = "://" in entry
    parts = urlsplit(entry if with_scheme else f"//{entry}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{text!r} names no host (expected scheme://host[:port] or host:port)")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"{text!r}: no credentials, query or fragment in an endpoint")
    scheme = parts.scheme.lower() if with_scheme else None
    if scheme is not None and scheme not in DEFAULT_PORTS:
        raise ValueError(f"{text!r}: scheme must be one of {', '.join(DEFAULT_PORTS)}")
    if not with_scheme and parts.path:
        raise ValueError(f"{text!r}: a path needs a scheme (http://host:port/path)")
    if port is None:
        port = DEFAULT_PORTS[scheme] if scheme is not None else default_port
    if port is None or port == 0:
        raise ValueError(f"{text!r} has no port and the service sets none")
    return Endpoint(
        host=parts.hostname, port=port, scheme=scheme, path=parts.path.rstrip("/") or ""
    )
