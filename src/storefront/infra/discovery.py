"""Service discovery: every outgoing dependency is a named service ("payments", "mail")
resolved through one :class:`ServiceDiscovery` (decision 0139).

A service is found from static endpoints in settings (the default), or from DNS: the A/AAAA
records of a name (a Kubernetes Service, a Consul service name) or its SRV records
(``_service._proto.name``: a Kubernetes headless Service's named port, Consul's SRV answers)
with their ports, priorities and weights. DNS is asked with dnspython's async resolver, on the
configured nameservers (Consul's agent on port 8600) or the system's.

- Balancing: the endpoints of the best priority that has any endpoint in service take turns
  in proportion to their weight (smooth weighted round-robin: deterministic, so three equal
  A records take one pick in three each; SRV weights 3 and 1 take three picks in four and
  one). A priority's endpoints all out of service, the next priority serves (SRV fail-over).
- Caching: an answer is kept for its TTL, clamped to ``[min_ttl, max_ttl]`` (Consul answers
  TTL 0 by default; a huge TTL must not pin a dead address). A lookup that fails keeps the
  last answer for ``stale_seconds`` more (RFC 8767), retrying every ``retry_seconds``; with no
  answer to fall back on, the failure is remembered for ``retry_seconds`` so that a broken
  name is not asked again on every call.
- Ejection: ``report_failure(service, endpoint)`` takes an endpoint out of rotation for
  ``cooldown``, then it returns by itself (``report_success`` brings it back at once). When
  every endpoint is out, the one ejected longest ago is tried rather than nothing.

Time is the injected ``clock`` (monotonic seconds), so tests move it instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge

from storefront.kit.endpoints import Endpoint, parse_endpoint
from storefront.kit.errors import DomainError

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.resolver

    from storefront.settings import DiscoverySettings, ServiceEndpointsSettings

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
ClientT = TypeVar("ClientT")

# ``service`` is a configured name, never a host: bounded label values
LOOKUPS = Counter(
    "storefront_discovery_lookups",
    "DNS lookups of a discovered service by outcome: ok, stale (failed; the last answer "
    "is kept), failed (no answer to fall back on: calls to the service fail).",
    ["service", "outcome"],
)
EJECTIONS = Counter(
    "storefront_discovery_ejections",
    "Endpoints taken out of rotation after a reported failure.",
    ["service"],
)
ENDPOINTS = Gauge(
    "storefront_discovery_endpoints",
    "Endpoints of a service's current answer: in rotation, or out (ejected, cooling down).",
    ["service", "state"],
    multiprocess_mode="livemax",
)
STATIC_TTL = math.inf  # static endpoints never expire


class ServiceUnresolvable(DomainError):
    """A named service has no endpoint: its DNS name does not exist, has no records, or no
    nameserver answered. In a request, a 503 problem with Retry-After."""

    status = 503
    slug = "service-unresolvable"
    title = "A service this request needs cannot be found"

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(
            f"service {service!r}: {reason}", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
        self.service = service
        self.reason = reason


class UnknownService(LookupError):
    """No service of that name is configured (a programming or configuration error)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An endpoint as an answer gives it: SRV priority (lower first) and weight."""

    endpoint: Endpoint
    priority: int = 0
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Answer:
    candidates: tuple[Candidate, ...]
    ttl: float  # seconds the answer may be kept (before clamping)


class Source(Protocol):
    """Where a service's endpoints come from."""

    @property
    def description(self) -> str: ...

    async def lookup(self, service: str) -> Answer: ...


@dataclass(frozen=True, slots=True)
class StaticSource:
    endpoints: tuple[Endpoint, ...]

    @property
    def description(self) -> str:
        return "static " + ", ".join(str(e) for e in self.endpoints)

    async def lookup(self, service: str) -> Answer:
        return Answer(tuple(Candidate(e) for e in self.endpoints), STATIC_TTL)


class Dns:
    """dnspython's async resolver on the configured nameservers (or the system's), with no
    cache of its own (:class:`ServiceDiscovery` keeps answers) and no search domains: names
    are absolute."""

    def __init__(
        self, nameservers: Sequence[str] = (), *, port: int = 53, timeout_seconds: float = 2.0
    ) -> None:
        self._nameservers = tuple(nameservers)
        self._port = port
        self._timeout = timeout_seconds
        self._resolver: dns.asyncresolver.Resolver | None = None

    @property
    def description(self) -> str:
        if not self._nameservers:
            return "the system's nameservers"
        return "nameserver " + ", ".join(f"{ns} port {self._port}" for ns in self._nameservers)

    def _get(self, service: str) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            import dns.asyncresolver
            import dns.resolver

            try:
                resolver = dns.asyncresolver.Resolver(configure=not self._nameservers)
            except dns.resolver.NoResolverConfiguration:
                raise ServiceUnresolvable(
                    service, "no nameserver configured (set STOREFRONT_DISCOVERY__NAMESERVERS)"
                ) from None
            if self._nameservers:
                resolver.nameservers = list(self._nameservers)
            resolver.port = self._port
            resolver.timeout = self._timeout
            resolver.lifetime = self._timeout
            resolver.cache = None
            self._resolver = resolver
        return self._resolver

    async def query(self, service: str, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """The answer, or None when the name exists without records of that type;
        ServiceUnresolvable when it does not exist or no nameserver answers."""
        import dns.exception
        import dns.resolver

        resolver = self._get(service)
        where = self.description
        try:
            answer = await resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            raise ServiceUnresolvable(
                service, f"{name} does not exist (NXDOMAIN, {where})"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise ServiceUnresolvable(
                service, f"no nameserver answered for {name} {rdtype} ({where}): {exc}"
            ) from None
        except dns.exception.Timeout:
            raise ServiceUnresolvable(
                service, f"no answer for {name} {rdtype} within {self._timeout}s ({where})"
            ) from None
        except dns.exception.DNSException as exc:
            raise ServiceUnresolvable(service, f"{name} {rdtype}: {exc} ({where})") from None
        except OSError as exc:  # the nameserver's network unreachable, no socket to be had
            raise ServiceUnresolvable(service, f"{name} {rdtype}: {exc} ({where})") from None
        return answer if answer.rrset is not None else None

    async def addresses(self, service: str, name: str) -> tuple[list[str], float]:
        """The A and AAAA addresses of ``name`` (IPv4 first) and the smaller TTL."""
        results = await asyncio.gather(
            self.query(service, name, "A"),
            self.query(service, name, "AAAA"),
            return_exceptions=True,
        )
        found: list[str] = []
        ttls: list[float] = []
        errors: list[ServiceUnresolvable] = []
        for result in results:
            if isinstance(result, ServiceUnresolvable):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            elif result is not None and result.rrset is not None:
                found.extend(sorted(rdata.to_text() for rdata in result.rrset))
                ttls.append(result.rrset.ttl)
        if found:
            return found, min(ttls)
        if errors:
            raise errors[0]
        raise ServiceUnresolvable(service, f"{name} has no A or AAAA records ({self.description})")


@dataclass(frozen=True, slots=True)
class AddressSource:
    """The A/AAAA records of ``name``, each an endpoint on ``port``."""

    dns: Dns
    name: str
    port: int
    scheme: str | None = None

    @property
    def description(self) -> str:
        return f"A/AAAA {self.name} port {self.port} ({self.dns.description})"

    async def lookup(self, service: str) -> Answer:
        addresses, ttl = await self.dns.addresses(service, self.name)
        server_name = self.name.rstrip(".").lower()
        return Answer(
            tuple(
                Candidate(Endpoint(a, self.port, self.scheme, server_name=server_name))
                for a in addresses
            ),
            ttl,
        )


@dataclass(frozen=True, slots=True)
class SrvSource:
    """The SRV records of ``name``; each target's addresses from the answer's additional
    section (Kubernetes and Consul send them) or else from its own A/AAAA lookup. A target
    that does not resolve through this resolver keeps its name (the system may know it)."""

    dns: Dns
    name: str
    scheme: str | None = None

    @property
    def description(self) -> str:
        return f"SRV {self.name} ({self.dns.description})"

    async def lookup(self, service: str) -> Answer:
        import dns.rdatatype

        answer = await self.dns.query(service, self.name, "SRV")
        if answer is None or answer.rrset is None:
            raise ServiceUnresolvable(
                service, f"{self.name} has no SRV records ({self.dns.description})"
            )
        ttls: list[float] = [answer.rrset.ttl]
        glue: dict[str, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                name = rrset.name.to_text().lower()  # DNS names ignore case
                glue.setdefault(name, []).extend(r.to_text() for r in rrset)
                ttls.append(rrset.ttl)
        candidates: list[Candidate] = []
        for record in answer.rrset:
            target = record.target.to_text()
            if target == ".":
                continue  # RFC 2782: "the service is decidedly not available at this domain"
            addresses = sorted(glue.get(target.lower(), []))
            if not addresses:
                try:
                    addresses, ttl = await self.dns.addresses(service, target)
                    ttls.append(ttl)
                except ServiceUnresolvable as exc:
                    logger.debug("SRV target %s not resolved here: %s", target, exc.reason)
                    addresses = [target.rstrip(".")]
            server_name = target.rstrip(".").lower()
            candidates.extend(
                Candidate(
                    Endpoint(a, record.port, self.scheme, server_name=server_name),
                    record.priority,
                    record.weight,
                )
                for a in addresses
            )
        if not candidates:
            raise ServiceUnresolvable(
                service, f"{self.name}: every SRV target is '.' ({self.dns.description})"
            )
        # in a stable order (servers rotate theirs), so turns do not depend on it
        candidates.sort(key=lambda c: (c.priority, c.endpoint.host, c.endpoint.port))
        return Answer(tuple(candidates), min(ttls))


@dataclass(slots=True)
class _State:
    source: Source
    candidates: tuple[Candidate, ...] | None = None
    expires_at: float = -math.inf
    stale_until: float = -math.inf
    failure: ServiceUnresolvable | None = None
    failure_until: float = -math.inf
    turns: dict[Endpoint, int] = field(default_factory=dict)  # smooth round-robin
    ejected: dict[Endpoint, float] = field(default_factory=dict)  # endpoint -> when
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ServiceDiscovery:
    """The one resolver of named services (see the module's docstring)."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        *,
        cooldown_seconds: float = 30.0,
        min_ttl_seconds: float = 1.0,
        max_ttl_seconds: float = 300.0,
        stale_seconds: float = 300.0,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._states = {name: _State(source) for name, source in sources.items()}
        self._cooldown = cooldown_seconds
        self._min_ttl = min_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._stale = stale_seconds
        self._retry = retry_seconds
        self._clock = clock

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(sorted(self._states))

    def __contains__(self, service: object) -> bool:
        return service in self._states

    def describe(self, service: str) -> str:
        return self._state(service).source.description

    def service(self, name: str) -> ServiceEndpoints:
        """A handle on one service, for a client that talks to that service only."""
        self._state(name)  # UnknownService now, not at the first call
        return ServiceEndpoints(self, name)

    async def endpoints(self, service: str) -> tuple[Endpoint, ...]:
        """Every endpoint of the current answer (refreshed if expired), in or out of service."""
        return tuple(c.endpoint for c in await self._answer(service, self._state(service)))

    async def pick(self, service: str) -> Endpoint:
        """The endpoint to call next; ServiceUnresolvable when there is none."""
        state = self._state(service)
        candidates = await self._answer(service, state)
        now = self._clock()
        for endpoint, when in list(state.ejected.items()):
            if now - when >= self._cooldown:
                del state.ejected[endpoint]
                self._gauge(service, state)
                logger.info(
                    "service %s: %s back in rotation after its cool-down", service, endpoint
                )
        serving = [c for c in candidates if c.endpoint not in state.ejected]
        if not serving:  # all out: the one that has rested longest, rather than nothing
            return min(candidates, key=lambda c: state.ejected[c.endpoint]).endpoint
        best = min(c.priority for c in serving)
        return _next_turn(state, [c for c in serving if c.priority == best])

    def report_failure(self, service: str, endpoint: Endpoint) -> None:
        """``endpoint`` failed (refused, reset, timed out): out of rotation for the cool-down.
        Reported again while out, its cool-down starts over."""
        state = self._state(service)
        if endpoint not in state.ejected:
            EJECTIONS.labels(service=service).inc()
            logger.warning(
                "service %s: %s failing, out of rotation for %ss", service, endpoint, self._cooldown
            )
        state.ejected[endpoint] = self._clock()
        if len(state.ejected) > _MAX_EJECTED:  # bounded: forget the longest-rested
            del state.ejected[min(state.ejected, key=state.ejected.__getitem__)]
        self._gauge(service, state)

    def report_success(self, service: str, endpoint: Endpoint) -> None:
        """``endpoint`` answered: back in rotation now if it was out."""
        state = self._state(service)
        if state.ejected.pop(endpoint, None) is not None:
            self._gauge(service, state)
            logger.info("service %s: %s answering again, back in rotation", service, endpoint)

    def _state(self, service: str) -> _State:
        try:
            return self._states[service]
        except KeyError:
            known = ", ".join(self.services) or "none"
            raise UnknownService(
                f"no service {service!r} is configured (known: {known}); set "
                f"STOREFRONT_DISCOVERY__SERVICES__{service.upper()}__URLS (or __DNS_NAME, __SRV)"
            ) from None

    async def _answer(self, service: str, state: _State) -> tuple[Candidate, ...]:
        if state.candidates is not None and self._clock() < state.expires_at:
            return state.candidates
        async with state.lock:  # one lookup per service at a time; the others wait for it
            now = self._clock()
            if state.candidates is not None and now < state.expires_at:
                return state.candidates
            if state.candidates is None and state.failure is not None and now < state.failure_until:
                raise state.failure
            counted = not isinstance(state.source, StaticSource)
            try:
                answer = await state.source.lookup(service)
            except ServiceUnresolvable as exc:
                now = self._clock()
                if state.candidates is not None and now < state.stale_until:
                    if counted:
                        LOOKUPS.labels(service=service, outcome="stale").inc()
                    logger.warning(
                        "service %s: lookup failed, keeping the last answer: %s",
                        service,
                        exc.reason,
                    )
                    state.expires_at = now + self._retry
                    return state.candidates
                state.candidates = None
                state.failure, state.failure_until = exc, now + self._retry
                if counted:
                    LOOKUPS.labels(service=service, outcome="failed").inc()
                self._gauge(service, state)
                raise
            if counted:
                LOOKUPS.labels(service=service, outcome="ok").inc()
            now = self._clock()
            ttl = min(max(answer.ttl, self._min_ttl), self._max_ttl)
            if answer.ttl == STATIC_TTL:
                ttl = STATIC_TTL
            state.candidates = answer.candidates
            state.expires_at = now + ttl
            state.stale_until = state.expires_at + self._stale
            state.failure = None
            current = {c.endpoint for c in state.candidates}
            for gone in [e for e in state.ejected if e not in current]:
                del state.ejected[gone]
            self._gauge(service, state)
            return state.candidates

    @staticmethod
    def _gauge(service: str, state: _State) -> None:
        total = len(state.candidates or ())
        out = sum(1 for c in state.candidates or () if c.endpoint in state.ejected)
        ENDPOINTS.labels(service=service, state="in_rotation").set(total - out)
        ENDPOINTS.labels(service=service, state="out").set(out)


_MAX_EJECTED = 1024


def _next_turn(state: _State, tier: Sequence[Candidate]) -> Endpoint:
    """Smooth weighted round-robin (as nginx balances upstreams): each turn every endpoint
    gains its weight, the highest is chosen and pays back the total. Weight 0 is chosen only
    when the whole tier is weight 0 (then they take equal turns)."""
    weights = {c.endpoint: c.weight for c in tier}
    if not any(weights.values()):
        weights = dict.fromkeys(weights, 1)
    if set(state.turns) != set(weights):
        state.turns = dict.fromkeys(weights, 0)
    for endpoint, weight in weights.items():
        state.turns[endpoint] += weight
    chosen = max(weights, key=lambda e: state.turns[e])  # first of equals: answer order
    state.turns[chosen] -= sum(weights.values())
    return chosen


@dataclass(frozen=True, slots=True)
class ServiceEndpoints:
    """One service of a :class:`ServiceDiscovery`: what a client of that service needs."""

    discovery: ServiceDiscovery
    name: str

    async def pick(self) -> Endpoint:
        return await self.discovery.pick(self.name)

    def report_failure(self, endpoint: Endpoint) -> None:
        self.discovery.report_failure(self.name, endpoint)

    def report_success(self, endpoint: Endpoint) -> None:
        self.discovery.report_success(self.name, endpoint)


class PerEndpoint(Generic[ClientT]):
    """A client object per endpoint of one service, for SDKs whose address is fixed when
    they are built (Stripe's ``StripeClient(base_addresses=...)``): ``pick`` returns the
    next endpoint and its client, built on first use by ``build`` and kept while the
    endpoint is in the service's answers (at most ``max_clients``, the oldest dropped)."""

    def __init__(
        self,
        endpoints: ServiceEndpoints,
        build: Callable[[Endpoint], ClientT],
        *,
        max_clients: int = 64,
    ) -> None:
        self.endpoints = endpoints
        self._build = build
        self._clients: dict[Endpoint, ClientT] = {}
        self._max = max_clients

    async def pick(self) -> tuple[Endpoint, ClientT]:
        endpoint = await self.endpoints.pick()
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = self._build(endpoint)
            while len(self._clients) > self._max:
                del self._clients[next(iter(self._clients))]
        return endpoint, client

    def report_failure(self, endpoint: Endpoint) -> None:
        self.endpoints.report_failure(endpoint)

    def report_success(self, endpoint: Endpoint) -> None:
        self.endpoints.report_success(endpoint)


def source_from_settings(spec: ServiceEndpointsSettings, dns: Dns) -> Source:
    if spec.srv:
        return SrvSource(dns, spec.srv, spec.scheme)
    if spec.dns_name:
        if spec.port is None:
            raise ValueError(f"DNS_NAME {spec.dns_name!r} needs a PORT to connect to")
        return AddressSource(dns, spec.dns_name, spec.port, spec.scheme)
    return StaticSource(tuple(parse_endpoint(u, default_port=spec.port) for u in spec.urls))


def build_discovery(
    settings: DiscoverySettings,
    *,
    defaults: Mapping[str, Iterable[str]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ServiceDiscovery:
    """The resolver for ``settings``; ``defaults``: static endpoints (``host:port`` or URLs)
    of services the settings do not list (mail from STOREFRONT_SMTP__HOST/PORT)."""
    dns = Dns(
        settings.nameservers,
        port=settings.nameserver_port,
        timeout_seconds=settings.timeout_seconds,
    )
    sources: dict[str, Source] = {
        name: StaticSource(tuple(parse_endpoint(u) for u in urls))
        for name, urls in (defaults or {}).items()
    }
    sources.update(
        {name: source_from_settings(spec, dns) for name, spec in settings.services.items()}
    )
    return ServiceDiscovery(
        sources,
        cooldown_seconds=settings.cooldown_seconds,
        min_ttl_seconds=settings.min_ttl_seconds,
        max_ttl_seconds=settings.max_ttl_seconds,
        stale_seconds=settings.stale_seconds,
        retry_seconds=settings.retry_seconds,
        clock=clock,
    )
