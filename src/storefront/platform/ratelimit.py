"""Distributed rate limiting with the `limits` library: one budget shared by every process.

Counters live in Redis (sliding-window-counter by default, moving-window on request) so every
process and pod draws on the same budget. When Redis stops answering, the limiter falls back
to a per-process in-memory limiter (logged once, reported by /healthz) and keeps probing Redis
in the background; when Redis answers again it switches back by itself. On the embedded
default (no Redis) the in-memory limiter is the only one and that is its normal state.

`RateLimitMiddleware` (pure ASGI) picks the policy for each request, keys it (signed-in user,
client address, account named in a sign-in body), and answers 429 problem+json with
`Retry-After` when a budget is spent. Every limited response carries the IETF httpapi draft's
`RateLimit-Policy` and `RateLimit` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.platform.http.client_address import client_address
from storefront.platform.http.problems import problem_response
from storefront.platform.security.tokens import InvalidToken, TokenService

logger = logging.getLogger("storefront.ratelimit")

Strategy = Literal["sliding-window-counter", "moving-window"]
_STRATEGIES: dict[str, type[RateLimiter]] = {
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
}
# Everything a broken or slow Redis can raise through limits' redis-py bridge.
_STORAGE_FAILURES = (StorageError, RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Limit:
    """One budget of a policy, e.g. ``auth`` at 30 per minute."""

    name: str
    item: RateLimitItem

    @property
    def window_seconds(self) -> int:
        return int(self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Outcome:
    limit: Limit
    allowed: bool
    remaining: int
    reset_seconds: int  # until the budget has room again (at least 1 when refused)


def parse_policy(name: str, rates: str) -> tuple[Limit, ...]:
    items = parse_many(rates)
    if len(items) == 1:
        return (Limit(name, items[0]),)
    return tuple(Limit(f"{name}-{item.get_expiry()}s", item) for item in items)


class DistributedRateLimiter:
    """Redis-backed limiter with a per-process in-memory fallback that heals by itself."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        prefix: str,
        strategy: Strategy = "sliding-window-counter",
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
    ) -> None:
        self._strategy_cls = _STRATEGIES[strategy]
        self.strategy = strategy
        self._timeout = timeout_seconds
        self._retry_seconds = retry_seconds
        self._memory = self._strategy_cls(MemoryStorage())
        self._redis_storage: Storage | None = None
        self._redis: RateLimiter | None = None
        if redis is not None:
            # share the runtime's pool (limits types its options narrower than it accepts)
            pool: Any = redis.connection_pool
            self._redis_storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                connection_pool=pool,
                key_prefix=f"{prefix}ratelimit",
                wrap_exceptions=True,
            )
            self._redis = self._strategy_cls(self._redis_storage)
        self.fallback_since: float | None = None  # wall-clock time of the switch to memory
        self.fallbacks = 0
        self.last_error: str | None = None
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def backend(self) -> str:
        if self._redis is None or self.fallback_since is not None:
            return "memory"
        return "redis"

    def status(self) -> dict[str, Any]:
        """For /healthz: ``degraded`` while a configured Redis is being stood in for."""
        state: dict[str, Any] = {"backend": self.backend, "strategy": self.strategy}
        if self._redis is None:
            return {"status": "up", **state, "scope": "process"}
        if self.fallback_since is None:
            return {"status": "up", **state, "scope": "shared"}
        return {
            "status": "degraded",
            **state,
            "scope": "process",
            "since": self.fallback_since,
            "error": self.last_error,
            "fallbacks": self.fallbacks,
        }

    async def hit(self, limits: Sequence[Limit], key: str) -> list[Outcome]:
        """Spend one unit of every limit for ``key``; each outcome says whether it had room."""
        if self._redis is not None and self.fallback_since is None:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._hit(self._redis, limits, key)
            except _STORAGE_FAILURES as exc:
                self._fall_back(exc)
        elif self._redis is not None:
            self._maybe_probe()
        return await self._hit(self._memory, limits, key)

    async def _hit(self, limiter: RateLimiter, limits: Sequence[Limit], key: str) -> list[Outcome]:
        outcomes = []
        now = time.time()
        for limit in limits:
            allowed = await limiter.hit(limit.item, limit.name, key)
            stats = await limiter.get_window_stats(limit.item, limit.name, key)
            reset = max(0, math.ceil(stats.reset_time - now))
            if not allowed:
                reset = max(1, reset)
            outcomes.append(Outcome(limit, allowed, max(0, stats.remaining), reset))
        return outcomes

    def _fall_back(self, exc: BaseException) -> None:
        self.fallbacks += 1
        self.fallback_since = time.time()
        self.last_error = type(exc.__cause__ or exc).__name__
        self._next_probe = time.monotonic() + self._retry_seconds
        logger.warning(
            "rate limiter: Redis unreachable (%s); falling back to a per-process in-memory "
            "limiter until it answers again",
            self.last_error,
        )

    def _maybe_probe(self) -> None:
        if self._probe is not None or time.monotonic() < self._next_probe:
            return
        self._probe = asyncio.create_task(self._check_redis())

    async def _check_redis(self) -> None:
        storage = self._redis_storage
        healthy = False
        if storage is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    healthy = await storage.check()
            except Exception:  # noqa: BLE001 - any failure means "still down"
                healthy = False
        if healthy:
            logger.warning("rate limiter: Redis answers again; back on the shared limiter")
            self.fallback_since = None
            self.last_error = None
        else:
            self._next_probe = time.monotonic() + self._retry_seconds
        self._probe = None

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


# --- the middleware -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A route with its own policy. ``path`` is a route template (``/shops/{shop_id}/...``).

    ``account_field`` names the body field (JSON or form) that identifies the account a
    sign-in targets, so guessing against one account is limited whatever address it comes
    from. ``accept`` restricts the rule to requests that ask for one of those media types.
    """

    method: str
    path: str
    policy: str
    account_field: str | None = None
    accept: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    def applies(self, method: str, path: str, headers: Headers) -> bool:
        if method != self.method or not self.pattern.match(path):
            return False
        if self.accept:
            accept = headers.get("accept", "")
            return any(media in accept for media in self.accept)
        return True


@dataclass(frozen=True, slots=True)
class Policies:
    anonymous: tuple[Limit, ...]
    user: tuple[Limit, ...]
    auth: tuple[Limit, ...]
    auth_account: tuple[Limit, ...]
    expensive: tuple[Limit, ...]

    @classmethod
    def parse(
        cls, *, anonymous: str, user: str, auth: str, auth_account: str, expensive: str
    ) -> Policies:
        return cls(
            anonymous=parse_policy("anonymous", anonymous),
            user=parse_policy("user", user),
            auth=parse_policy("auth", auth),
            auth_account=parse_policy("auth-account", auth_account),
            expensive=parse_policy("expensive", expensive),
        )


MAX_ACCOUNT_BODY = 16 * 1024


def _digest(value: str) -> str:
    # Keys never hold an email address or token in clear: Redis is not a place for them.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _structured_headers(outcomes: Sequence[Outcome]) -> dict[str, str]:
    policy = ", ".join(
        f'"{o.limit.name}";q={o.limit.item.amount};w={o.limit.window_seconds}' for o in outcomes
    )
    state = ", ".join(f'"{o.limit.name}";r={o.remaining};t={o.reset_seconds}' for o in outcomes)
    return {"RateLimit-Policy": policy, "RateLimit": state}


class RateLimitMiddleware:
    """Pure ASGI: spend the request's budgets before the app runs; refuse with 429 when spent.

    ``limiter`` and ``tokens`` are looked up per request (they live in the runtime the
    lifespan builds); ``exempt`` paths (probes, metrics, docs) are never limited.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policies: Policies,
        rules: Sequence[Rule],
        resources: Callable[[Scope], tuple[DistributedRateLimiter, TokenService, Sequence[Any]]],
        exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.policies = policies
        self.rules = tuple(rules)
        self.resources = resources
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or scope["path"].startswith(self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        limiter, tokens, trusted = self.resources(scope)
        headers = Headers(scope=scope)
        address = client_address(scope, trusted)
        subject = _subject(headers, tokens)
        rule = next(
            (r for r in self.rules if r.applies(scope["method"], scope["path"], headers)), None
        )
        checks: list[tuple[tuple[Limit, ...], str]] = []
        if rule is None:
            if subject is not None:
                checks.append((self.policies.user, f"user:{subject}"))
            else:
                checks.append((self.policies.anonymous, f"addr:{address}"))
        elif rule.policy == "auth":
            checks.append((self.policies.auth, f"addr:{address}"))
            if rule.account_field is not None:
                account, receive = await _account(scope, receive, rule.account_field)
                if account is not None:
                    checks.append((self.policies.auth_account, f"account:{_digest(account)}"))
        else:
            owner = f"user:{subject}" if subject is not None else f"addr:{address}"
            checks.append((self.policies.expensive, owner))

        outcomes: list[Outcome] = []
        for limits, key in checks:
            outcomes.extend(await limiter.hit(limits, key))
        rate_headers = _structured_headers(outcomes)
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            retry_after = max(o.reset_seconds for o in refused)
            names = ", ".join(o.limit.name for o in refused)
            response = problem_response(
                Request(scope),
                429,
                detail=f"Rate limit '{names}' exceeded; retry in {retry_after} s",
                headers={**rate_headers, "Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableHeaders(scope=message)
                for name, value in rate_headers.items():
                    mutable[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _subject(headers: Headers, tokens: TokenService) -> str | None:
    """The signed-in user's id from a valid bearer token; an invalid token counts as none
    (keying by a token the client can vary at will would hand it unlimited budgets)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return tokens.verify(token.strip()).subject
    except InvalidToken:
        return None


async def _account(scope: Scope, receive: Receive, field_name: str) -> tuple[str | None, Receive]:
    """Read the (small) body to find the targeted account; hand the app a replay of it."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False) or len(body) > MAX_ACCOUNT_BODY:
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    if len(body) > MAX_ACCOUNT_BODY:
        return None, replay
    content_type = Headers(scope=scope).get("content-type", "")
    value: object = None
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", "replace")).get(field_name)
        value = values[0] if values else None
    else:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            value = parsed.get(field_name)
    if not isinstance(value, str) or not value.strip():
        return None, replay
    return value.strip().lower(), replay
