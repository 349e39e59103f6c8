"""Process-wide resources: opened in order and closed in reverse by :func:`open_resources`,
the one owner, for the API's lifespan, the job worker and every command-line task alike.

``redis`` is one connection pool per process, or None on the embedded default; ``mailer`` is
None without SMTP. Everything else is always there, set when the resources are opened, and
never reassigned: what changes at run time (draining) lives in an object of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storefront import __version__
from storefront.auth.kit import SecurityKit, build_security_kit
from storefront.auth.passwords import PasswordHasher
from storefront.auth.tokens import TokenService
from storefront.cache import ResponseCache
from storefront.idempotency import IdempotencyStore, ResponseSealer
from storefront.infra.discovery import ServiceDiscovery, build_discovery
from storefront.infra.mail import Mailer
from storefront.infra.outbound import OutboundClient
from storefront.infra.ratelimit import DistributedRateLimiter
from storefront.infra.redis import create_redis
from storefront.infra.replica import ReadRouter
from storefront.infra.stripe_client import StripeConnection, build_stripe
from storefront.jobs.queue import Job, JobQueue, OutboxConfig, build_job_queue
from storefront.kit.client_address import Network, parse_networks
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.kit.endpoints import Endpoint
from storefront.kit.kdf import derive_key
from storefront.migration_head import head_revision
from storefront.resilience import Resilience
from storefront.resources.instrument import instrument_resources
from storefront.settings import Settings
from storefront.telemetry import metrics
from storefront.vault import PersonalDataVault
from storefront.vault.config import build_vault

if TYPE_CHECKING:
    from storefront.resources.instrument import Observability

Role = Literal["api", "worker", "cli"]


class Draining:
    """The process is going away: set once by the server on SIGTERM (before it stops
    accepting connections) or by the lifespan's shutdown; readiness fails from then on."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def begin(self) -> None:
        self.active = True


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings  # the configuration they were opened from
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # read sessions: on the replica when one is configured and usable, else the primary (0150)
    reads: ReadRouter
    passwords: PasswordHasher
    tokens: TokenService
    idempotency: IdempotencyStore
    security: SecurityKit
    vault: PersonalDataVault  # personal data at rest: seal, open, destroy (crypto-shredding)
    cache: ResponseCache  # the response cache (L1 in-process, L2 on ``redis``)
    rate_limiter: DistributedRateLimiter  # on ``redis``, in memory while it is away
    jobs: JobQueue  # background jobs (after-commit enqueueing)
    http: OutboundClient  # the one outgoing HTTP client (webhooks)
    redis: Redis | None  # None on the embedded default
    mailer: Mailer | None  # outgoing SMTP, used by jobs; None with mail off
    # the payment provider's SDK client; None without STOREFRONT_PAYMENTS__SECRET_KEY
    stripe: StripeConnection | None
    # the resolver of named outgoing services: payments, mail (decision 0139)
    discovery: ServiceDiscovery
    # breakers, bulkheads, deadlines and retries around every outgoing call (0138)
    resilience: Resilience
    redis_prefix: str
    trusted_proxies: tuple[Network, ...]
    # the newest migration this code was written for (None when migrations are not shipped)
    expected_schema_revision: str | None
    draining: Draining = field(default_factory=Draining)


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    role: Role,
    jobs: Iterable[Job] = (),
    observability: Observability | None = None,
) -> AsyncIterator[Resources]:
    """Open every resource in order and close them in reverse, also when opening fails
    half-way (bad master keys, a signing-key store that fails): nothing opened is left open.

    ``role``: the API loads the signing keys (a fresh database gets its first one) and starts
    the job queue (broker, outbox relay, depth sampler); the worker's queue is started by
    :func:`storefront.jobs.queue.run_worker`, which waits for the broker; a command-line
    task starts neither. ``jobs``: the declared jobs the queue runs (the composition names
    them all). ``observability``: pool, query and client instrumentation when given."""
    async with AsyncExitStack() as stack:
        engine = build_engine(settings)
        stack.push_async_callback(engine.dispose)
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        if redis is not None:
            stack.push_async_callback(redis.aclose)
        http = build_http_client(settings)
        stack.push_async_callback(http.aclose)
        # named outgoing services (0139): nothing to close, no lookup until a first call
        discovery = build_service_discovery(settings)
        # the provider's SDK clients, one per discovered endpoint of "payments", on one
        # HTTP session (closed here)
        stripe = build_stripe(settings.payments, discovery.service("payments"))
        if stripe is not None:
            stack.push_async_callback(stripe.aclose)
        cache = build_cache(settings, redis)
        stack.push_async_callback(cache.aclose)
        vault = build_vault(settings)  # fails fast on unusable master keys
        sessionmaker = create_sessionmaker(engine)
        reads = build_read_router(settings, sessionmaker)
        replica_engine = reads.replica_engine
        if replica_engine is not None:
            stack.push_async_callback(replica_engine.dispose)
        auth = settings.auth
        security = build_security_kit(auth, sessionmaker, redis, settings.redis_prefix)
        if role == "api":
            await security.keys.try_load()  # a fresh database gets its first key here
        rate_limiter = build_rate_limiter(settings, redis)
        stack.push_async_callback(rate_limiter.aclose)
        queue = build_jobs(settings, jobs)
        passwords = PasswordHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
            max_threads=auth.hashing_threads,
            max_waiting=auth.hashing_queue,
            max_wait_seconds=auth.hashing_wait_ms / 1000,
            max_run_seconds=auth.hashing_timeout_ms / 1000,
            nice=auth.hashing_nice,
        )
        stack.callback(passwords.close)
        resources = Resources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            reads=reads,
            passwords=passwords,
            tokens=TokenService(
                keys=security.keys.ring,
                issuer=auth.jwt_issuer,
                audience=auth.jwt_audience,
                access_ttl_seconds=auth.access_token_ttl_seconds,
            ),
            idempotency=IdempotencyStore(
                ttl=timedelta(hours=settings.idempotency.ttl_hours),
                lock_timeout=timedelta(seconds=settings.idempotency.lock_timeout_seconds),
                sealer=ResponseSealer(
                    derive_key(auth.jwt_secret.get_secret_value(), IDEMPOTENCY_PURPOSE)
                ),
            ),
            security=security,
            vault=vault,
            cache=cache,
            rate_limiter=rate_limiter,
            jobs=queue,
            http=http,
            redis=redis,
            mailer=build_mailer(settings, discovery),
            stripe=stripe,
            discovery=discovery,
            resilience=build_resilience(settings, redis),
            redis_prefix=settings.redis_prefix,
            trusted_proxies=parse_networks(settings.trusted_proxies),
            expected_schema_revision=head_revision(),
        )
        if role == "api":
            stack.push_async_callback(queue.shutdown)
            await queue.startup(resources)  # the broker (in-process when no URL is set)
        if observability is not None:
            instrument_resources(observability, engine=engine, redis=redis, jobs=queue, http=http)
            if replica_engine is not None and observability.metrics_enabled:
                metrics.instrument_engine(replica_engine, pool_name="replica")
        if replica_engine is not None:
            await reads.check()  # the first verdict before serving: reads use it at once
            if role != "cli":
                reads.start()
                stack.push_async_callback(reads.stop)
        yield resources


def build_engine(settings: Settings) -> AsyncEngine:
    db = settings.database
    return create_engine(
        settings.database_url,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout_seconds,
        connect_timeout=db.connect_timeout_seconds,
        pool_recycle=db.pool_recycle_seconds,
        pool_pre_ping=db.pool_pre_ping,
        statement_timeout_ms=db.statement_timeout_ms,
        echo=db.echo,
    )


def build_read_router(settings: Settings, primary: async_sessionmaker[AsyncSession]) -> ReadRouter:
    """Read sessions on the replica at STOREFRONT_DATABASE_REPLICA_URL (its own pool), or on
    the primary when none is set (decision 0150)."""
    db = settings.database
    replica = None
    if settings.database_replica_url is not None:
        replica = create_engine(
            settings.database_replica_url,
            pool_size=db.replica_pool_size,
            max_overflow=db.replica_max_overflow,
            pool_timeout=db.pool_timeout_seconds,
            connect_timeout=db.connect_timeout_seconds,
            pool_recycle=db.pool_recycle_seconds,
            pool_pre_ping=db.pool_pre_ping,
            statement_timeout_ms=db.statement_timeout_ms,
            echo=db.echo,
            application_name="storefront-replica-reads",
        )
    return ReadRouter(
        primary,
        replica,
        max_lag_bytes=db.replica_max_lag_bytes,
        max_lag_seconds=db.replica_max_lag_seconds,
        interval=db.replica_check_interval_seconds,
        pin_seconds=db.read_your_writes_seconds,
    )


def build_rate_limiter(settings: Settings, redis: Redis | None) -> DistributedRateLimiter:
    p = settings.protection
    return DistributedRateLimiter(
        redis,
        prefix=settings.redis_prefix,
        strategy=p.rate_limit_strategy,
        timeout_seconds=p.redis_timeout_seconds,
        retry_seconds=p.redis_retry_seconds,
    )


def build_cache(settings: Settings, redis: Redis | None) -> ResponseCache:
    """The response cache shares the process's one Redis pool (L2); L1 only without it."""
    return ResponseCache(
        redis=redis,
        prefix=settings.redis_prefix,
        enabled=settings.cache.enabled,
        ttl_seconds=settings.cache.ttl_seconds,
        local_max_bytes=settings.cache.local_max_mb * 1024 * 1024,
        lock_ms=settings.cache.fill_lock_ms,
    )


IDEMPOTENCY_PURPOSE = "storefront idempotency responses"


def build_jobs(settings: Settings, declared: Iterable[Job] = ()) -> JobQueue:
    jobs = settings.jobs
    return build_job_queue(
        settings.broker_url,
        queue=jobs.queue,
        max_retries=jobs.max_retries,
        base_delay=jobs.retry_base_delay_seconds,
        max_delay=jobs.retry_max_delay_seconds,
        concurrency=jobs.worker_concurrency,
        shutdown_timeout=jobs.shutdown_timeout_seconds,
        outbox=OutboxConfig(
            poll_seconds=jobs.outbox_poll_seconds,
            lease_seconds=jobs.outbox_lease_seconds,
            batch_size=jobs.outbox_batch_size,
            send_timeout_seconds=jobs.outbox_send_timeout_seconds,
            depth_interval_seconds=jobs.queue_depth_interval_seconds,
            pool_size=jobs.outbox_pool_size,
        ),
        jobs=declared,
    )


def build_http_client(settings: Settings) -> OutboundClient:
    outbound = settings.outbound
    return OutboundClient(
        user_agent=f"Storefront/{__version__} (+webhooks)",
        timeout_seconds=outbound.timeout_seconds,
        connect_timeout_seconds=outbound.connect_timeout_seconds,
        max_connections=outbound.max_connections,
        max_connections_per_host=outbound.max_connections_per_host,
        allow_private_targets=outbound.allow_private_targets,
        allow_http=outbound.allow_http,
    )


def build_resilience(settings: Settings, redis: Redis | None) -> Resilience:
    """Breakers shared through Redis when it is configured; the webhook, mail and payment
    provider clients' own timeouts are their policies' defaults (decision 0138). Nothing to
    close: breaker state lives on the process's Redis pool (closed with it) or in memory."""
    outbound, smtp, payments = settings.outbound, settings.smtp, settings.payments
    return Resilience(
        settings.resilience,
        redis=redis,
        prefix=settings.redis_prefix,
        clients={
            "webhooks": {
                "timeout_seconds": outbound.timeout_seconds,
                "connect_timeout_seconds": outbound.connect_timeout_seconds,
            },
            "mail": {"connect_timeout_seconds": smtp.timeout_seconds},
            "payments": {
                "timeout_seconds": payments.timeout_seconds,
                "connect_timeout_seconds": payments.connect_timeout_seconds,
            },
        },
    )


def build_service_discovery(settings: Settings) -> ServiceDiscovery:
    """The resolver of named outgoing services (decision 0139): those listed under
    STOREFRONT_DISCOVERY__SERVICES__*, else static defaults: "payments" at
    STOREFRONT_PAYMENTS__API_BASE, "mail" at STOREFRONT_SMTP__HOST/PORT (when set)."""
    defaults: dict[str, list[str]] = {"payments": [settings.payments.api_base]}
    if settings.smtp.host is not None:
        # an IPv6 literal in brackets: "[::1]:25"
        defaults["mail"] = [Endpoint(settings.smtp.host, settings.smtp.port).netloc]
    return build_discovery(settings.discovery, defaults=defaults)


def build_mailer(settings: Settings, discovery: ServiceDiscovery) -> Mailer | None:
    smtp = settings.smtp
    if "mail" not in discovery:
        return None  # mail off: jobs that send mail skip it
    return Mailer(
        servers=discovery.service("mail"),
        sender=smtp.sender,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        security=smtp.security,
        timeout_seconds=smtp.timeout_seconds,
    )
