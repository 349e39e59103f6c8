"""One settings tree for the whole service (env prefix ``STOREFRONT_``).

Nested groups are read from ``STOREFRONT_<GROUP>__<FIELD>``; the handful of URLs that
operators set all the time also have flat aliases (``STOREFRONT_DATABASE_URL``,
``STOREFRONT_PORT``...). In production the tree refuses unsafe values and fails fast.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-development-only-secret-0123456789"  # noqa: S105  # nosec B105


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class DatabaseSettings(BaseModel):
    pool_size: int = Field(default=10, ge=1, le=200)
    max_overflow: int = Field(default=5, ge=0, le=200)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # opening one connection (TCP, startup, authentication), end to end: past it the request
    # is a 503 with Retry-After; with pool_timeout_seconds, the longest a request waits for a
    # connection while no database answers (decision 0195)
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    pool_recycle_seconds: int = Field(default=1800, ge=-1)
    # off: a connection the server closed is replaced at checkout without a round trip
    # (kit/db.py); on adds three round trips (BEGIN, ping, ROLLBACK) to every checkout
    pool_pre_ping: bool = False
    statement_timeout_ms: int = Field(default=5000, ge=0, description="PostgreSQL only; 0 = off")
    echo: bool = False
    # the read replica's pool (STOREFRONT_DATABASE_REPLICA_URL), beside the primary's
    replica_pool_size: int = Field(default=10, ge=1, le=200)
    replica_max_overflow: int = Field(default=5, ge=0, le=200)
    # above either, reads go to the primary until the replica has caught up (docs/replica.md)
    replica_max_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    replica_max_lag_seconds: float = Field(default=5.0, ge=0)
    # how often the replica's lag is measured (0: only on /healthz; tests)
    replica_check_interval_seconds: float = Field(default=1.0, ge=0)
    # read-your-writes: after a write, this principal's reads wait for the replica to have
    # replayed it (or go to the primary) for this long; the Storefront-LSN header lasts forever
    read_your_writes_seconds: float = Field(default=30.0, ge=0, le=3600)


class AuthSettings(BaseModel):
    # seals signing keys and TOTP seeds at rest (access tokens are EdDSA-signed, see keys)
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_issuer: str = "storefront"
    jwt_audience: str = "storefront-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    hashing_threads: int = Field(default=4, ge=1, le=64)
    # admission control of password hashing (decision 0134): past the threads, this many
    # may wait, each this long; beyond either, sign-in and sign-up answer 503 at once. A
    # sign-up holds its database connection while it waits and hashes: keep threads + queue
    # well under the pool (database.pool_size + max_overflow)
    hashing_queue: int = Field(default=4, ge=0, le=1000)
    hashing_wait_ms: int = Field(default=500, ge=1, le=10_000)
    # a hash still running this long after it got its thread is answered 503 + Retry-After
    # (it finishes on its thread, which stays taken): a sign-in on starved cores is refused
    # in time for the client to retry instead of timing out. With the pool's 5 s and the
    # 0.5 s for a thread, a sign-in's waits stay under a 10 s client timeout (decision 0207)
    hashing_timeout_ms: int = Field(default=3000, ge=100, le=60_000)
    # the hashing threads' CPU priority (Linux nice, 0-19; 0: as the rest of the process)
    hashing_nice: int = Field(default=19, ge=0, le=19)
    # sessions (refresh-token families)
    session_idle_timeout_seconds: int = Field(default=14 * 86400, ge=60)
    session_absolute_lifetime_seconds: int = Field(default=30 * 86400, ge=60)
    refresh_overlap_seconds: int = Field(default=0, ge=0, le=300)  # 0 = off
    # live sessions per account; a sign-in past it ends the least recently used (decision 0122)
    max_sessions_per_user: int = Field(default=50, ge=1, le=10_000)
    recent_auth_seconds: int = Field(default=600, ge=30, le=86400)
    mfa_token_ttl_seconds: int = Field(default=300, ge=30, le=900)
    totp_issuer: str = Field(default="Storefront", min_length=1, max_length=64)
    # brute-force throttling of sign-in and MFA guesses
    # (decision 0100) an account's failures from one address or one known device
    throttle_account_max_failures: int = Field(default=5, ge=1)
    throttle_address_max_failures: int = Field(default=20, ge=1)
    # an account's failures from every address without a device cookie together
    throttle_untrusted_max_failures: int = Field(default=20, ge=1)
    throttle_window_seconds: int = Field(default=900, ge=1)
    throttle_base_delay_seconds: int = Field(default=30, ge=1)
    throttle_max_delay_seconds: int = Field(default=900, ge=1)
    device_cookie_days: int = Field(default=90, ge=1, le=400)  # a known device is remembered


class CacheSettings(BaseModel):
    """The response and query-result cache (L1 in-process, L2 Redis when configured)."""

    enabled: bool = True  # off: every read goes to the database (comparisons, operators)
    ttl_seconds: int = Field(default=300, ge=1, le=86400)
    local_max_mb: int = Field(default=64, ge=1, le=4096)  # L1 size per process
    fill_lock_ms: int = Field(default=2000, ge=10, le=30000)  # cross-process stampede lock


class IdempotencySettings(BaseModel):
    ttl_hours: int = Field(default=24, ge=1)
    lock_timeout_seconds: int = Field(default=60, ge=1)


class ObservabilitySettings(BaseModel):
    """Logs, metrics, traces, error tracking and health (see docs/operations.md)."""

    log_format: Literal["auto", "json", "console"] = "auto"  # auto: JSON in production
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = True
    # None: on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, else off
    tracing_enabled: bool | None = None
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    sentry_dsn: SecretStr | None = None
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    # each process checks its own readiness this often, into storefront_ready; 0 = only /readyz
    readiness_interval_seconds: float = Field(default=5.0, ge=0, le=300)
    shutdown_drain_seconds: float = Field(default=3.0, ge=0, le=120)
    worker_metrics_port: int = Field(default=9102, ge=0, le=65535)  # job worker; 0 = off
    # the API's metrics on a port of their own, served by `storefront serve` (decision 0092);
    # unset: 9101 in production, else none (metrics at /metrics on the API port); 0: none
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # when set, /metrics on the API port answers only `Authorization: Bearer <token>`
    metrics_token: SecretStr | None = None

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError(
                "STOREFRONT_OBSERVABILITY__METRICS_TOKEN must be a random value of 24+ chars"
            )
        return value


class ApiSettings(BaseModel):
    """API versions (STOREFRONT_API__*, decision 0143, docs/api-versioning.md): when v1 was
    deprecated and when it goes away. A v1 route with a v2 successor answers with these as
    ``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594)."""

    v1_deprecated_at: AwareDatetime = datetime(2026, 12, 7, tzinfo=UTC)
    v1_sunset_at: AwareDatetime = datetime(2027, 12, 31, tzinfo=UTC)

    @model_validator(mode="after")
    def _sunset_after_deprecation(self) -> Self:
        if self.v1_sunset_at <= self.v1_deprecated_at:
            raise ValueError("STOREFRONT_API__V1_SUNSET_AT must come after V1_DEPRECATED_AT")
        return self


class ProtectionSettings(BaseModel):
    """API protection (STOREFRONT_PROTECTION__*): rate-limit policies, input limits, shedding.

    Rates use the `limits` notation: ``"300/minute"``, several joined by ``;``
    (``"20/second;300/minute"``).
    """

    anonymous_rate: str = "300/minute"  # per client address, signed-out requests
    user_rate: str = "1200/minute"  # per signed-in user
    auth_rate: str = "30/minute"  # sign-in, MFA, register, password: per address...
    auth_account_rate: str = "10/minute"  # ...and per account (email / MFA token's user)
    expensive_rate: str = "20/hour"  # exports and bulk upserts, per user (or address)
    # consent changes, per user: each adds a record and an audit entry (decision 0128)
    consent_rate: str = "10/minute;50/day"
    # /healthz, /readyz, /metrics: per client address and per process (decision 0092)
    operations_rate: str = "120/minute"
    rate_limit_strategy: Literal["sliding-window-counter", "moving-window"] = (
        "sliding-window-counter"
    )
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    redis_retry_seconds: float = Field(default=5.0, gt=0, le=300)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_bulk_body_bytes: int = Field(default=8_388_608, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=512)
    # request line and headers together (the server refuses a larger head: 400) and the
    # number of header fields (431); decision 0094
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    # a request head must arrive within this long, else the connection is closed (slowloris)
    header_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    max_headers: int = Field(default=100, ge=16, le=1000)
    max_json_array_items: int = Field(default=10_000, ge=1)  # backstop; schemas bound lists
    max_in_flight: int = Field(default=512, ge=1)
    shed_retry_after_seconds: int = Field(default=2, ge=1)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    cors_allow_credentials: bool = False

    @field_validator(
        "anonymous_rate",
        "user_rate",
        "auth_rate",
        "auth_account_rate",
        "expensive_rate",
        "consent_rate",
        "operations_rate",
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_many(value)  # raises ValueError naming the bad rate
        return value


class JobsSettings(BaseModel):
    """Background jobs (STOREFRONT_JOBS__*); the broker itself is STOREFRONT_BROKER_URL."""

    queue: str = Field(default="storefront.jobs", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    max_retries: int = Field(default=5, ge=0, le=50)
    retry_base_delay_seconds: float = Field(default=2.0, ge=0, le=3600)
    retry_max_delay_seconds: float = Field(default=300.0, ge=0, le=86400)
    worker_concurrency: int = Field(default=10, ge=1, le=1000)
    shutdown_timeout_seconds: float = Field(default=20.0, ge=0, le=600)
    # the job outbox (jobs/outbox.py): how often the relay looks for rows left behind,
    # how long a sender owns a row before another may send it, rows per pass, and how long
    # one send may take (less than the lease, so a row is never sent by two at once)
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    outbox_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_send_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    outbox_pool_size: int = Field(default=2, ge=1, le=20)  # the relay's own connections
    # how often queue depth and outbox backlog are measured (per process); 0: never
    queue_depth_interval_seconds: float = Field(default=15.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _send_within_lease(self) -> Self:
        if self.outbox_send_timeout_seconds >= self.outbox_lease_seconds:
            raise ValueError("jobs: outbox_send_timeout_seconds must be below outbox_lease_seconds")
        return self


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
AMQP_SCHEMES = ("amqp", "amqps")


def _multihost_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme is one of ``schemes``; a Sentinel address or an AMQP node list is
    also checked (decisions 0176, 0177). Refused at start-up with the variable's name, not
    by the client library inside the lifespan (a traceback) or never (a command that does
    not connect)."""
    from storefront.kit.multihost import amqp_nodes, is_sentinel_url, parse_sentinel_url

    if value is None or not value.strip():
        return value
    scheme = urlsplit(value.strip()).scheme.lower()
    if scheme not in schemes:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ValueError(
            f"unsupported URL ({shown}); use one of {', '.join(s + '://' for s in schemes)}"
        )
    if is_sentinel_url(value):
        parse_sentinel_url(value)
    elif value.strip().lower().startswith(("amqp://", "amqps://")):
        amqp_nodes(value)
    return value


class EventsSettings(BaseModel):
    """Domain events (STOREFRONT_EVENTS__*): relayed to RabbitMQ when ``broker_url`` (or else
    STOREFRONT_BROKER_URL) is an amqp:// URL, delivered in-process otherwise."""

    broker_url: str | None = None  # amqp://...; unset: STOREFRONT_BROKER_URL if it is amqp
    in_process: bool = False  # true: in-process delivery even with a RabbitMQ broker URL
    # unless set: "<deployment_name>.events" (decision 0113), like the job queue
    exchange: str = Field(default="storefront.events", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    poll_seconds: float = Field(default=1.0, gt=0, le=300)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    send_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    # a consumer that fails this many deliveries of one event dead-letters it
    max_deliveries: int = Field(default=5, ge=1, le=100)

    @field_validator("broker_url")
    @classmethod
    def _valid_nodes(cls, value: str | None) -> str | None:
        return _multihost_url(value, AMQP_SCHEMES)  # events go to RabbitMQ or in-process


class SmtpSettings(BaseModel):
    """Outgoing mail (STOREFRONT_SMTP__*), used by background jobs; no host: mail is off."""

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["none", "starttls", "tls"] = "none"
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    sender: str = Field(default="Storefront <orders@storefront.test>", min_length=3)


class PrivacySettings(BaseModel):
    """Personal data at rest (STOREFRONT_PRIVACY__*): envelope encryption keys.

    ``master_keys``: ``"v2:<base64 32 bytes>,v1:<base64 32 bytes>"``, the current version
    first (older ones only unwrap data keys until ``storefront keys rotate-master`` has
    re-wrapped them). Or ``master_key_file``: a JSON file
    ``{"current": "v2", "keys": {"v2": "<base64>", "v1": "<base64>"}, "blind_index_key": ...}``.
    ``blind_index_key`` (base64, 32 bytes) keys the email lookup hash; it never rotates with
    the master key. Development and tests derive both from the JWT secret when unset;
    production refuses to start without them.
    """

    master_keys: SecretStr | None = None
    master_key_file: str | None = None
    blind_index_key: SecretStr | None = None
    rotation_batch_size: int = Field(default=500, ge=1, le=10_000)

    @field_validator("master_keys", "blind_index_key")
    @classmethod
    def _valid_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        from storefront.kit.master_keys import decode_key, parse_master_keys

        if value is not None:  # the errors name versions and lengths, never key material
            if info.field_name == "master_keys":
                parse_master_keys(value.get_secret_value())
            else:
                decode_key(value.get_secret_value(), what="the blind-index key")
        return value

    # GDPR export and retention (docs/privacy.md)
    export_ttl_hours: int = Field(default=72, ge=1, le=720)  # a ready archive, then 410
    # unexpired exports (queued, running or ready) one account may have; 409 past it (0123)
    max_live_exports: int = Field(default=3, ge=1, le=100)
    export_record_days: int = Field(default=30, ge=0, le=3650)  # an expired export's row
    session_retention_days: int = Field(default=30, ge=0, le=3650)  # ended sessions
    # client addresses in the audit log (the entries stay; decision record 0117)
    audit_address_retention_days: int = Field(default=180, ge=1, le=3650)
    retention_interval_seconds: int = Field(default=3600, ge=0, le=7 * 86400)  # 0 = off
    # rows deleted per retention transaction: short transactions, short locks
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)


class OutboundSettings(BaseModel):
    """The outgoing HTTP client (webhooks): timeouts, pool, and which targets it may call."""

    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    max_connections_per_host: int = Field(default=10, ge=1, le=1000)
    # SSRF guard: off only for development and tests (receivers on loopback/private nets)
    allow_private_targets: bool = False
    allow_http: bool = False  # plain http:// webhook URLs (https only by default)


class OrdersSettings(BaseModel):
    """Unpaid orders (STOREFRONT_ORDERS__*, decision 0118): how long a pending order holds
    its stock, how often expired ones are released, and the default hold limits of a shop
    that has not set its own (``PATCH /shops/{id}/order-limits``)."""

    payment_window_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    expiry_interval_seconds: int = Field(default=60, ge=0, le=3600)  # 0 = no scheduled run
    expiry_batch_size: int = Field(default=200, ge=1, le=10_000)  # orders per transaction
    max_line_quantity: int = Field(default=100, ge=1, le=1000)
    max_order_units: int = Field(default=200, ge=1, le=100_000)
    max_pending_units: int = Field(default=500, ge=1, le=1_000_000)
    max_pending_stock_percent: int = Field(default=50, ge=1, le=100)
    # below this many units of a product the share above does not apply: a customer may
    # always hold this many (buying the last few of something is ordinary shopping)
    stock_share_floor_units: int = Field(default=5, ge=1, le=1000)


# the keys `make run` and the tests give the localstripe emulator; refused in production
EMULATOR_PAYMENTS_SECRET_KEY = "sk_test_localstripe"  # noqa: S105 - not a secret
EMULATOR_PAYMENTS_WEBHOOK_SECRET = "whsec_localstripe"  # noqa: S105 - not a secret


class PaymentsSettings(BaseModel):
    """The payment provider (STOREFRONT_PAYMENTS__*, decision 0137): Stripe's API, or the
    localstripe emulator that ``make run`` and the tests start on loopback. Without a
    secret key no order can be paid (503); production refuses the emulator (a plain-http
    address) and its keys."""

    api_base: str = "https://api.stripe.com"
    secret_key: SecretStr | None = None
    # the signing secret of the webhook endpoint (POST /api/v1/webhooks/stripe)
    webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)  # older: refused
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)  # one provider call, whole
    # a payment still `processing` this long after its last change is settled from the
    # provider by the reconciliation job
    reconcile_after_seconds: int = Field(default=60, ge=1, le=86400)
    reconcile_interval_seconds: int = Field(default=60, ge=0, le=3600)  # 0 = no scheduled run
    reconcile_batch_size: int = Field(default=100, ge=1, le=10_000)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query:
            raise ValueError("STOREFRONT_PAYMENTS__API_BASE must be an http(s) URL")
        return value.strip().rstrip("/")

    @property
    def claim_seconds(self) -> float:
        """How long one caller holds a payment for its provider call (longer than the call
        may take: two callers never talk to the provider about one payment at once)."""
        return self.timeout_seconds * 2 + 5


class DependencyResilience(BaseModel):
    """One outgoing dependency's overrides (STOREFRONT_RESILIENCE__DEPENDENCIES__<NAME>__*);
    unset fields take the section's defaults."""

    failure_threshold: int | None = Field(default=None, ge=1, le=1000)
    cool_down_seconds: float | None = Field(default=None, gt=0, le=3600)
    max_concurrent: int | None = Field(default=None, ge=1, le=10_000)
    max_wait_seconds: float | None = Field(default=None, ge=0, le=60)
    connect_timeout_seconds: float | None = Field(default=None, gt=0, le=60)
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)
    retry_attempts: int | None = Field(default=None, ge=1, le=10)


class ResilienceSettings(BaseModel):
    """Circuit breakers, bulkheads, timeouts and retries around every outgoing call
    (STOREFRONT_RESILIENCE__*, decision 0138): defaults for every dependency, and per
    dependency (``payments``, ``webhooks``, ``mail``...) overrides in ``dependencies``."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)  # failures in a row: open
    cool_down_seconds: float = Field(default=30.0, gt=0, le=3600)  # open, then one probe
    max_concurrent: int = Field(default=20, ge=1, le=10_000)  # calls in flight, per process
    max_wait_seconds: float = Field(default=0.25, ge=0, le=60)  # for a bulkhead slot
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # one attempt, end to end
    retry_attempts: int = Field(default=3, ge=1, le=10)  # idempotent calls only
    retry_initial_seconds: float = Field(default=0.1, gt=0, le=60)
    retry_max_seconds: float = Field(default=2.0, gt=0, le=600)
    dependencies: dict[str, DependencyResilience] = Field(default_factory=dict)


class ServiceEndpointsSettings(BaseModel):
    """One named outgoing dependency (STOREFRONT_DISCOVERY__SERVICES__<NAME>__*), found by
    exactly one of: ``urls`` (static, comma-separated ``https://host[:port][/path]`` or
    ``host:port``), ``dns_name`` (its A/AAAA records, with ``port``) or ``srv`` (its SRV
    records, ``_service._proto.name``: ports, priorities and weights from DNS). ``scheme``
    gives DNS-found endpoints a URL (``https``); ``port`` is also the default of a URL or
    ``host`` without one. Decision 0139."""

    urls: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=64)
    dns_name: str | None = Field(default=None, max_length=253)
    srv: str | None = Field(default=None, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Literal["http", "https", "smtp", "smtps"] | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        from storefront.kit.endpoints import parse_endpoint

        given = [n for n in ("urls", "dns_name", "srv") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "a discovered service needs exactly one of URLS, DNS_NAME or SRV "
                f"(got {', '.join(given).upper() or 'none'})"
            )
        for url in self.urls:
            parse_endpoint(url, default_port=self.port)  # ValueError names the entry
        if self.dns_name is not None:
            if self.port is None:
                raise ValueError(f"DNS_NAME {self.dns_name!r} needs a PORT to connect to")
            _check_dns_name(self.dns_name, "DNS_NAME")
        if self.srv is not None:
            _check_dns_name(self.srv, "SRV")
            labels = self.srv.rstrip(".").split(".")
            if len(labels) < 3 or not labels[0].startswith("_") or labels[1] not in _PROTOCOLS:
                raise ValueError(
                    f"SRV {self.srv!r} must read _service._proto.name (e.g. "
                    "_smtp._tcp.mail.default.svc.cluster.local or _payments._tcp.service.consul)"
                )
        return self


_PROTOCOLS = ("_tcp", "_udp")


def _check_dns_name(name: str, what: str) -> None:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(f"{what} {name!r} is an address, not a name: list it in URLS instead")
    labels = name.rstrip(".").split(".")
    if not all(0 < len(label) <= 63 for label in labels) or any(
        not label.replace("-", "").replace("_", "").isalnum() for label in labels
    ):
        raise ValueError(f"{what} {name!r} is not a DNS name")


class DiscoverySettings(BaseModel):
    """Service discovery (STOREFRONT_DISCOVERY__*, decision 0139): how outgoing dependencies
    ("payments", "mail", ...) are found. A service not listed here is static: mail defaults to
    STOREFRONT_SMTP__HOST/PORT. DNS answers are cached for their TTL, bounded by the min and
    max below; a failing endpoint is left out for ``cooldown_seconds``."""

    services: dict[str, ServiceEndpointsSettings] = Field(default_factory=dict)
    # DNS servers to ask (IP addresses), e.g. Consul's agent 127.0.0.1 with port 8600;
    # empty: the system's (/etc/resolv.conf: the cluster DNS in a Kubernetes pod)
    nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=8)
    nameserver_port: int = Field(default=53, ge=1, le=65535)
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)  # one lookup, every retry
    min_ttl_seconds: float = Field(default=1.0, ge=0, le=3600)  # Consul answers TTL 0
    max_ttl_seconds: float = Field(default=300.0, gt=0, le=86400)
    # a lookup that fails keeps the last answer this long (RFC 8767), retried meanwhile
    stale_seconds: float = Field(default=300.0, ge=0, le=86400)
    retry_seconds: float = Field(default=2.0, gt=0, le=300)  # after a failed lookup
    cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("nameservers", mode="before")
    @classmethod
    def _split_nameservers(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("nameservers")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                raise ValueError(
                    f"nameserver {entry!r} must be an IP address (the port is NAMESERVER_PORT)"
                ) from None
        return value

    @field_validator("services")
    @classmethod
    def _service_names(
        cls, value: dict[str, ServiceEndpointsSettings]
    ) -> dict[str, ServiceEndpointsSettings]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", name):
                raise ValueError(f"service name {name!r}: lower-case letters, digits, - and _")
        return value

    @model_validator(mode="after")
    def _ttl_bounds(self) -> Self:
        if self.min_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("discovery: min_ttl_seconds must not exceed max_ttl_seconds")
        return self


DEV_DEPLOYMENT_NAME = "storefront-dev"  # outside production, when none is set


class GraphQLSettings(BaseModel):
    """The GraphQL endpoint's bounds (STOREFRONT_GRAPHQL__*; decision 0146)."""

    max_query_chars: int = Field(default=10_000, ge=100, le=1_000_000)
    max_tokens: int = Field(default=2_000, ge=50, le=100_000)
    max_depth: int = Field(default=10, ge=2, le=100)
    max_aliases: int = Field(default=15, ge=0, le=1_000)
    # 1 per field, a connection's children times its page size (decision 0146)
    max_cost: int = Field(default=5_000, ge=10, le=1_000_000)
    # introspection and the GraphiQL page; unset: on, except in production
    introspection: bool | None = None
    # refuse queries that are not registered (src/storefront/graphql/persisted/)
    persisted_only: bool = False
    # a request spends one rate-limit call per this much cost (decision 0146)
    cost_per_call: int = Field(default=100, ge=1, le=1_000_000)
    # open subscription WebSockets one signed-in user may hold, per API process
    max_connections_per_user: int = Field(default=5, ge=1, le=1_000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOREFRONT_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
        frozen=True,
        # a refusal must not print its input: it holds the JWT secret and database passwords
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.development
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    graceful_shutdown_seconds: int = Field(default=20, ge=0)
    database_url: str = "sqlite+aiosqlite:///./var/storefront.db"
    # a streaming replica of database_url (PostgreSQL): read-only work reads there (0150)
    database_replica_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = Field(default="storefront:", min_length=1, max_length=64)
    # names this installation wherever it shares a broker or Redis with others: unless set
    # explicitly, the job queue (RabbitMQ queue and exchange, Redis stream and consumer
    # group) is "<name>.jobs" and the Redis key prefix "<name>:" (decision 0113). Required
    # in production; "storefront-dev" elsewhere.
    deployment_name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # the API's public address (https://api.example.com): absolute pagination links under it;
    # unset, links are relative. Never taken from the Host header (decision 0093).
    public_base_url: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # /docs and /openapi.json; unset: on, except in production (decision 0092)
    docs_enabled: bool | None = None
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    broker_url: str | None = None  # redis://... or amqp://...; unset: jobs run in-process
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    rate_limit_enabled: bool = True  # STOREFRONT_RATE_LIMIT_ENABLED=false: off (load tests)
    protection: ProtectionSettings = Field(default_factory=ProtectionSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    orders: OrdersSettings = Field(default_factory=OrdersSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    graphql: GraphQLSettings = Field(default_factory=GraphQLSettings)
    # shops one account may own at once; platform admins are not capped (decision 0121)
    max_owned_shops_per_user: int = Field(default=20, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _names_from_the_deployment(cls, data: object) -> object:
        """The queue and the Redis prefix default to names derived from deployment_name, so
        two installations on one broker or Redis never share a queue or keys."""
        if not isinstance(data, dict):
            return data
        name = data.get("deployment_name") or DEV_DEPLOYMENT_NAME
        if not isinstance(name, str):
            return data
        if not data.get("redis_prefix"):
            data = {**data, "redis_prefix": f"{name}:"}
        jobs = data.get("jobs")
        if jobs is None or (isinstance(jobs, dict) and not jobs.get("queue")):
            data = {**data, "jobs": {**(jobs or {}), "queue": f"{name}.jobs"}}
        events = data.get("events")
        if events is None or (isinstance(events, dict) and not events.get("exchange")):
            data = {**data, "events": {**(events or {}), "exchange": f"{name}.events"}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("cors_origins", "trusted_proxies"):
                raw = data.get(name)
                if isinstance(raw, str):
                    data = {**data, name: [o.strip() for o in raw.split(",") if o.strip()]}
        return data

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, origins: list[str]) -> list[str]:
        """Each entry is ``*`` or an origin exactly as a browser sends it (scheme, host and
        port only): anything else (a JSON list, a trailing slash, a path) never matches any
        request, so every browser call would be refused while the setting looks right."""
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                parts = urlsplit("")
            if (
                parts.scheme not in {"http", "https"}
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
                or origin != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(
                    f"{origin!r} is not an origin; list them "
                    "comma-separated as scheme://host[:port], e.g. "
                    "https://app.example.com,https://admin.example.com (no path, no "
                    "trailing slash)"
                )
        return origins

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        return _multihost_url(value, REDIS_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _valid_broker_url(cls, value: str | None) -> str | None:
        return _multihost_url(value, REDIS_SCHEMES + AMQP_SCHEMES)

    @field_validator("public_base_url")
    @classmethod
    def _valid_public_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ValueError(
                "STOREFRONT_PUBLIC_BASE_URL must be an http(s) URL such as "
                "https://api.example.com (a path is fine; no query, fragment or credentials)"
            )
        return value.strip().rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # raises ValueError: a clear error
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # postgres:// and postgresql:// use asyncpg, sqlite:// aiosqlite; other schemes refused
        from storefront.kit.db import normalise_database_url

        return normalise_database_url(value)

    @field_validator("database_replica_url")
    @classmethod
    def _replica_driver(cls, value: str | None) -> str | None:
        from storefront.kit.db import normalise_database_url

        if value is None or not value.strip():
            return None
        url = normalise_database_url(value)
        if not url.startswith("postgresql"):
            raise ValueError("STOREFRONT_DATABASE_REPLICA_URL must be a PostgreSQL URL")
        return url

    @model_validator(mode="after")
    def _replica_needs_postgres(self) -> Self:
        if self.database_replica_url is not None and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "STOREFRONT_DATABASE_REPLICA_URL needs a PostgreSQL STOREFRONT_DATABASE_URL"
            )
        return self

    @model_validator(mode="after")
    def _refuse_wildcard_with_credentials(self) -> Self:
        if "*" in self.cors_origins and self.protection.cors_allow_credentials:
            raise ValueError(
                "STOREFRONT_CORS_ORIGINS='*' with STOREFRONT_PROTECTION__CORS_ALLOW_CREDENTIALS "
                "would let any site act as the signed-in user; list the origins explicitly"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is not Environment.production:
            return self
        from storefront.kit.client_address import parse_networks, too_wide

        problems: list[str] = []
        secret = self.auth.jwt_secret.get_secret_value()
        if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
            problems.append(
                "STOREFRONT_AUTH__JWT_SECRET must be set to a random value of 32+ chars"
            )
        if self.debug:
            problems.append("STOREFRONT_DEBUG must be false in production")
        if self.deployment_name is None:
            problems.append(
                "STOREFRONT_DEPLOYMENT_NAME must name this installation (e.g. shop-prod): "
                "its job queue and Redis keys derive from it"
            )
        if self.database.echo:
            problems.append("SQL echo logs parameters; STOREFRONT_DATABASE__ECHO must be false")
        if self.is_in_memory_database:  # decision 0126
            problems.append(
                "STOREFRONT_DATABASE_URL names an in-memory SQLite database: its data is lost "
                "on restart and each worker process has its own; use a file or PostgreSQL"
            )
        if "*" in self.cors_origins:
            problems.append("STOREFRONT_CORS_ORIGINS must list origins explicitly, not '*'")
        plain = [origin for origin in self.cors_origins if origin.startswith("http://")]
        if plain:  # decision 0188
            problems.append(
                f"STOREFRONT_CORS_ORIGINS must list https:// origins only ({', '.join(plain)} "
                "is plain HTTP: anyone on its network path can change that page and call the "
                "API as its visitors): list the https:// origin"
            )
        wide = [e for e in self.trusted_proxies if any(map(too_wide, parse_networks([e])))]
        if wide:  # decision 0187
            problems.append(
                f"STOREFRONT_TRUSTED_PROXIES must list your proxies, not {', '.join(wide)}: "
                "every client in it could choose its own address with X-Forwarded-For (rate "
                "limits, sign-in throttles, audit log). Set the load balancers' own addresses "
                "or subnet (e.g. 10.0.12.0/24), or leave it empty when clients connect directly"
            )
        privacy = self.privacy
        if privacy.master_keys is None and privacy.master_key_file is None:
            problems.append(
                "personal data needs a master key: set STOREFRONT_PRIVACY__MASTER_KEYS "
                "or STOREFRONT_PRIVACY__MASTER_KEY_FILE"
            )
        if privacy.blind_index_key is None and privacy.master_key_file is None:
            problems.append(
                "STOREFRONT_PRIVACY__BLIND_INDEX_KEY must be set (base64, 32 random bytes)"
            )
        obs = self.observability
        if obs.metrics_port == 0 and obs.metrics_token is None:
            problems.append(
                "STOREFRONT_OBSERVABILITY__METRICS_PORT=0 would serve business metrics to anyone "
                "on the API port: set STOREFRONT_OBSERVABILITY__METRICS_TOKEN, or leave the "
                "port unset (9101)"
            )
        payments = self.payments
        emulator_keys = {EMULATOR_PAYMENTS_SECRET_KEY, EMULATOR_PAYMENTS_WEBHOOK_SECRET}
        if not payments.api_base.startswith("https://") or any(
            key is not None and key.get_secret_value() in emulator_keys
            for key in (payments.secret_key, payments.webhook_secret)
        ):
            problems.append(
                "STOREFRONT_PAYMENTS__* name the emulator: set API_BASE to the provider's "
                "https address (https://api.stripe.com) and its SECRET_KEY and WEBHOOK_SECRET"
            )
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _payment_lease_within_the_key_lock(self) -> Self:
        # a retry whose key is still held answers from the payment once its lease is over
        # (decision 0191): the key's lock must outlast the payment's lease, or a retry after
        # a lost answer takes the key over while the first attempt may still be charging
        lease = self.payments.claim_seconds
        if self.idempotency.lock_timeout_seconds <= lease:
            raise ValueError(
                "STOREFRONT_IDEMPOTENCY__LOCK_TIMEOUT_SECONDS "
                f"({self.idempotency.lock_timeout_seconds}) must exceed the payment lease "
                f"({lease:g} s: twice STOREFRONT_PAYMENTS__TIMEOUT_SECONDS plus 5); raise it "
                "or lower the payment timeout"
            )
        return self

    @model_validator(mode="after")
    def _metrics_port_is_not_the_api_port(self) -> Self:
        # the metrics listener binds first: the API then failed to bind and the process hung
        # on its metrics thread instead of exiting
        if self.api_metrics_port and self.api_metrics_port == self.port:
            raise ValueError(
                f"STOREFRONT_OBSERVABILITY__METRICS_PORT ({self.api_metrics_port}) must differ "
                f"from STOREFRONT_PORT ({self.port}); in production it defaults to 9101"
            )
        return self

    @property
    def docs_served(self) -> bool:
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.environment is not Environment.production

    @property
    def graphql_introspection(self) -> bool:
        if self.graphql.introspection is not None:
            return self.graphql.introspection
        return self.environment is not Environment.production

    @property
    def api_metrics_port(self) -> int:
        """The API's own metrics port (0: none; /metrics on the API port serves them)."""
        port = self.observability.metrics_port
        if port is not None:
            return port
        return 9101 if self.environment is Environment.production else 0

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_in_memory_database(self) -> bool:
        """``sqlite://``, ``sqlite:///:memory:``, ``file::memory:`` or ``mode=memory``."""
        if not self.is_sqlite:
            return False
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        database = url.database or ""
        return (
            database in ("", ":memory:")
            or database.startswith("file::memory:")
            or url.query.get("mode") == "memory"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
