"""What every domain's GraphQL part (``<domain>/graphql.py``) builds on: the per-request
context (resources, the caller, sessions, DataLoaders), the Money and DateTime scalars and
Relay-style connections. The schema itself is composed in ``storefront.graphql``
(decision 0145)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from storefront.auth.principal import Principal
from storefront.events import CloudEvent
from storefront.infra.ratelimit import parse_policy
from storefront.infra.replica import format_lsn, parse_lsn
from storefront.kit.client_address import client_address
from storefront.kit.db import after_commit, session_scope
from storefront.kit.errors import DomainError, Unauthenticated, UnprocessableEntity
from storefront.resources import Resources
from storefront.telemetry.logging import current_request
from storefront.web.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_cursor,
    encode_cursor,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class LoaderKey(Generic[K, V]):
    """Names one relation ("the payments of an order") that a domain's type resolves
    through a DataLoader. The domain that reads the relation declares the key; the domain
    that owns the rows provides the batch function, and ``storefront.graphql`` pairs them
    (so a lower domain never imports a higher one or a sibling)."""

    name: str


class LiveStream(Protocol):
    def __aiter__(self) -> AsyncIterator[CloudEvent]: ...

    async def aclose(self) -> None: ...


class LiveFeed(Protocol):
    """The domain events as they happen, for subscriptions (storefront.graphql.live)."""

    def subscribe(self, wants: Callable[[CloudEvent], bool]) -> LiveStream:
        """Registered at once: what happens after the call is in the stream."""
        ...


class RateLimited(DomainError):
    """A budget of the rate limiter is spent (REST's 429)."""

    status: ClassVar[int] = 429
    slug: ClassVar[str] = "too-many-requests"
    title: ClassVar[str] = "Too many requests"


# the budgets a REST route may declare instead of the default (``route_policy(rate=...)``)
# that a GraphQL field spends for the same action
Budget = Literal["auth", "expensive", "consents"]


BatchFactory = Callable[["GraphQLContext"], Callable[[list[Any]], Awaitable[Sequence[Any]]]]


class GraphQLContext(BaseContext):
    """One per operation (an HTTP request, or one subscription): the process's resources,
    the caller (None: anonymous) and this operation's DataLoaders, so a relation is read
    once per batch of parents, never once per parent."""

    def __init__(
        self,
        resources: Resources,
        principal: Principal | None,
        batches: dict[LoaderKey[Any, Any], BatchFactory],
        live: LiveFeed | None = None,
    ) -> None:
        super().__init__()
        self.resources = resources
        self.principal = principal
        self.live = live
        # the signed-in user whose WebSocket connection this is, while it counts against
        # their bound (storefront.graphql.router)
        self.connection_user: uuid.UUID | None = None
        self._batches = batches
        self._loaders: dict[LoaderKey[Any, Any], DataLoader[Any, Any]] = {}
        self._written = 0  # the WAL position of this operation's last write (0: none)

    def require_principal(self) -> Principal:
        """The caller; Unauthenticated (code ``unauthenticated``) when anonymous."""
        if self.principal is None:
            raise Unauthenticated("Sign in and send the access token as a Bearer token.")
        return self.principal

    async def spend(self, budget: Budget) -> None:
        """Spend one call of the budget REST's route for the same action declares
        (``route_policy(rate=...)``), under the same key as RateLimitMiddleware: "auth" per
        client address, "expensive" and "consents" per user (else address). One budget for
        both APIs: GraphQL is no way around REST's limit. Spent: RateLimited
        (``too-many-requests`` with ``retry_after``)."""
        resources = self.resources
        settings = resources.settings
        if not settings.rate_limit_enabled:
            return
        protection = settings.protection
        rates = {
            "auth": protection.auth_rate,
            "expensive": protection.expensive_rate,
            "consents": protection.consent_rate,
        }
        address = "unknown"
        if self.request is not None:
            address = client_address(self.request.scope, resources.trusted_proxies)
        if budget == "auth" or self.principal is None:
            key = f"addr:{address}"
        else:
            key = f"user:{self.principal.user_id}"
        outcomes = await resources.rate_limiter.hit(parse_policy(budget, rates[budget]), key)
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            retry_after = max(o.reset_seconds for o in refused)
            names = ", ".join(o.limit.name for o in refused)
            raise RateLimited(
                f"Rate limit '{names}' exceeded; retry in {retry_after} s",
                extra={"retry_after": retry_after},
            )

    def require_live(self) -> LiveFeed:
        if self.live is None:  # pragma: no cover - the app always has one
            raise RuntimeError("live updates are not running in this process")
        return self.live

    def fresh_loaders(self) -> None:
        """Forget what the loaders read: a subscription's next update reads anew."""
        self._loaders.clear()

    def loader(self, key: LoaderKey[K, V]) -> DataLoader[K, V]:
        loader = self._loaders.get(key)
        if loader is None:
            loader = DataLoader(load_fn=self._batches[key](self))
            self._loaders[key] = loader
        return loader

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session of its own for one resolver or one batch (resolvers run concurrently:
        they never share a session), needing no transaction."""
        reads = self.resources.reads
        min_lsn = self._written
        holder = current_request()
        if reads.enabled and holder is not None:  # read-your-writes (decision 0150)
            min_lsn = max(min_lsn, parse_lsn(holder.get("read_after")))
            if (key := holder.get("principal_key")) is not None:
                min_lsn = max(min_lsn, reads.pins.get(key))
        async with await reads.session(min_lsn=min_lsn) as session:
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """One transaction for one mutation: committed when it returns, rolled back when it
        raises, after-commit actions (cache invalidation, jobs, events) run as for REST."""
        scope = session_scope(self.resources.sessionmaker)
        session = await anext(scope)
        if self.resources.reads.enabled:  # first: before the cache invalidation (0150)
            after_commit(session, self._remember_write)
        try:
            yield session
        except BaseException as exc:
            await scope.athrow(exc)
            raise
        await anext(scope, None)

    async def _remember_write(self) -> None:
        lsn = await self.resources.reads.write_lsn()
        if lsn is None:
            return
        self._written = max(self._written, lsn)  # this operation's later reads
        holder = current_request()
        if holder is not None:
            holder["write_lsn"] = format_lsn(lsn)
            if (key := holder.get("principal_key")) is not None:
                self.resources.reads.pins.pin(key, lsn)


# --- scalars -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoneyValue:
    """An amount in minor units (cents) of an ISO 4217 currency."""

    cents: int
    currency: str


def _money_out(value: MoneyValue) -> dict[str, Any]:
    return {"cents": value.cents, "currency": value.currency}


def _money_in(value: Any) -> MoneyValue:
    if (
        not isinstance(value, dict)
        or set(value) != {"cents", "currency"}
        or type(value["cents"]) is not int
        or not isinstance(value["currency"], str)
        or len(value["currency"]) != 3
        or not value["currency"].isascii()
        or not value["currency"].isupper()
    ):
        raise ValueError('Money is {"cents": <integer>, "currency": "<ISO 4217 code>"}')
    return MoneyValue(value["cents"], value["currency"])


def _datetime_out(value: datetime) -> str:
    if value.tzinfo is None:  # the database's UTC, read back naive (SQLite)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _datetime_in(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime is an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a UTC offset (or Z)")
    return parsed.astimezone(UTC)


# the schema's custom scalars (StrawberryConfig.scalar_map): a field typed MoneyValue is a
# Money, a datetime a DateTime
SCALAR_MAP: dict[object, Any] = {
    MoneyValue: strawberry.scalar(
        name="Money",
        description=(
            'An amount of money: {"cents": <integer, minor units>, "currency": "<ISO 4217 '
            'code>"}. Never a float.'
        ),
        serialize=_money_out,
        parse_value=_money_in,
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="An instant, ISO 8601 in UTC with a Z suffix (2026-01-31T12:00:00Z).",
        specified_by_url="https://www.rfc-editor.org/rfc/rfc3339",
        serialize=_datetime_out,
        parse_value=_datetime_in,
    ),
}


# --- connections ---------------------------------------------------------------------------


@strawberry.type(description="Where a page of a connection stands (Relay cursor pagination).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when another page follows this one.")
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null on an empty page."
    )


@strawberry.type(description="One item of a page and the cursor just after it.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Pass as `after` to get the items after this one.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of items: `first` items after the `after` cursor.")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(
        description="The items of the page with their cursors, in order."
    )
    page_info: PageInfo = strawberry.field(description="Where this page stands.")

    @strawberry.field(description="The items of the page, without their cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    after: uuid.UUID | None


def page_request(first: int | None, after: str | None) -> PageRequest:
    """``first``/``after`` checked as REST's ``limit``/``cursor`` are (1..100, default 20;
    the same opaque cursors)."""
    limit = DEFAULT_PAGE_SIZE if first is None else first
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise UnprocessableEntity(f"first must be between 1 and {MAX_PAGE_SIZE}.")
    return PageRequest(limit, decode_cursor(after))


def connection(
    nodes: Sequence[T], ids: Sequence[uuid.UUID], *, has_next_page: bool
) -> Connection[T]:
    """A page of ``nodes`` (whose keys are ``ids``, in order) as a connection."""
    edges = [Edge(cursor=encode_cursor(i), node=n) for n, i in zip(nodes, ids, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next_page, end_cursor=edges[-1].cursor if edges else None
        ),
    )


@dataclass
class Composition:
    """What ``storefront.graphql`` assembles from the domains: their query and mutation
    types and the batch function behind each loader key."""

    queries: list[type] = field(default_factory=list)
    mutations: list[type] = field(default_factory=list)
    subscriptions: list[type] = field(default_factory=list)
    batches: dict[LoaderKey[Any, Any], BatchFactory] = field(default_factory=dict)
