"""Addresses that name several hosts, for the dependencies that fail over between them
(decisions 0176 and 0177). Pure: settings validate with it, the Redis and AMQP clients build
with it.

- Redis through Sentinel: ``redis+sentinel://[[user]:password@]h1:26379,h2:26379/service[/db]``
  (``rediss+sentinel://`` for TLS to the master); the sentinels are asked which server is the
  master of ``service``. ``?sentinel_password=...`` when the sentinels require a password of
  their own.
- A RabbitMQ cluster: ``amqp://user:password@h1:5672,h2:5672,h3:5672/vhost?query``, one URL
  per node (same credentials, virtual host and query for each).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
DEFAULT_SENTINEL_PORT = 26379
AMQP_PORTS = {"amqp": 5672, "amqps": 5671}

Host = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """Where the sentinels are, which master to ask them for, and how to log in to it."""

    sentinels: tuple[Host, ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() in SENTINEL_SCHEMES


def _split(url: str) -> tuple[str, str, str, str]:
    """``scheme://userinfo@hosts/rest`` -> (scheme, userinfo, hosts, rest); the netloc is
    cut by hand since ``urlsplit`` refuses a port list."""
    scheme, sep, tail = url.strip().partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a URL (scheme://host:port,...)")
    cut = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    netloc, rest = tail[:cut], tail[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme.lower(), userinfo if at else "", hosts, rest


def parse_hosts(hosts: str, *, default_port: int) -> tuple[Host, ...]:
    """``h1:p1,h2,[::1]:p3`` -> ((host, port), ...); ValueError for an empty entry or a port
    that is not a number from 1 to 65535."""
    parsed: list[Host] = []
    for raw in hosts.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"an empty host in {hosts!r}")
        parts = urlsplit(f"//{entry}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{entry!r}: the port is not a number from 1 to 65535") from None
        if not parts.hostname or parts.path:
            raise ValueError(f"{entry!r} is not host[:port]")
        parsed.append((parts.hostname, port or default_port))
    return tuple(parsed)


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The parts of a ``redis+sentinel://`` URL; ValueError naming what is wrong."""
    scheme, userinfo, hosts, rest = _split(url)
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"{scheme!r} is not a Sentinel scheme ({', '.join(SENTINEL_SCHEMES)})")
    path, _, query = rest.partition("?")
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError(
            "a Sentinel URL names the master's service: redis+sentinel://h1:p1,h2:p2/service[/db]"
        )
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"{segments[1]!r}: the database is a number")
        db = int(segments[1])
    username, _, password = userinfo.partition(":")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown Sentinel URL option(s): {', '.join(sorted(unknown))}")
    sentinel_password = options.get("sentinel_password", [None])[0]
    return SentinelAddress(
        sentinels=parse_hosts(hosts, default_port=DEFAULT_SENTINEL_PORT),
        service=unquote(segments[0]),
        db=db,
        username=unquote(username) or None,
        password=unquote(password) if password else None,
        sentinel_password=sentinel_password or None,
        tls=SENTINEL_SCHEMES[scheme],
    )


def amqp_nodes(url: str) -> tuple[str, ...]:
    """One URL per node of ``amqp://user:password@h1:p1,h2:p2/vhost?query``, in the order
    given (a one-host URL is returned as it is). ValueError for an unusable host list."""
    scheme, userinfo, hosts, rest = _split(url)
    if scheme not in AMQP_PORTS:
        raise ValueError(f"{scheme!r} is not an AMQP scheme (amqp://, amqps://)")
    if "," not in hosts:
        return (url.strip(),)
    credentials = f"{userinfo}@" if userinfo else ""
    nodes = []
    for host, port in parse_hosts(hosts, default_port=AMQP_PORTS[scheme]):
        shown = f"[{host}]" if ":" in host else quote(host, safe=".-_~")
        nodes.append(f"{scheme}://{credentials}{shown}:{port}{rest}")
    return tuple(nodes)


def amqp_hosts(url: str) -> tuple[Host, ...]:
    """The (host, port) of each node of an AMQP URL, in the order given."""
    scheme, _, hosts, _ = _split(url)
    if scheme not in AMQP_PORTS:
        raise ValueError(f"{scheme!r} is not an AMQP scheme (amqp://, amqps://)")
    return parse_hosts(hosts or "localhost", default_port=AMQP_PORTS[scheme])


def url_hosts(url: str, default_ports: dict[str, int]) -> tuple[Host, ...]:
    """Every host of a one- or many-host URL, for a reachability check: a Sentinel URL's
    sentinels, an AMQP URL's nodes."""
    scheme, _, hosts, _ = _split(url)
    if scheme in SENTINEL_SCHEMES:
        return parse_sentinel_url(url).sentinels
    return parse_hosts(hosts or "127.0.0.1", default_port=default_ports.get(scheme, 0))
