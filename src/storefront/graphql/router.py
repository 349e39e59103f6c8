"""``/graphql``: the schema over HTTP (POST; GET for queries) and WebSocket
(graphql-transport-ws, and the older graphql-ws), with the caller from the same bearer token
as REST (on a WebSocket, from the ``Authorization`` of the connection_init payload), and
GraphiQL where introspection is on."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from storefront.auth.principal import Principal
from storefront.cache import Entry, make_entry
from storefront.graphql.ide import graphiql_html
from storefront.graphql.live import LiveHub
from storefront.graphql.persisted import registered
from storefront.graphql.public_cache import PublicQueryCache
from storefront.graphql.schema import BATCHES, build_schema
from storefront.identity.deps import _principal
from storefront.kit.errors import DomainError
from storefront.resources import Resources
from storefront.settings import Settings
from storefront.web.graphql import GraphQLContext
from storefront.web.limits import JsonTooComplex, check_structure

PATH = "/graphql"
logger = logging.getLogger(__name__)
MAX_SUBSCRIPTIONS_PER_CONNECTION = 10


def _bearer(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _resources(connection: HTTPConnection) -> Resources:
    # web.deps.get_resources takes a Request, which a WebSocket is not
    resources: Resources = connection.app.state.resources
    return resources


ConnectionResources = Annotated[Resources, Depends(_resources)]


async def _caller(resources: ConnectionResources, connection: HTTPConnection) -> Principal | None:
    """The caller from the Authorization header exactly as REST reads it (a bad or revoked
    token is REST's 401 problem); no header: anonymous (public reads only)."""
    token = _bearer(connection.headers.get("authorization"))
    if token is None:
        return None
    return await _principal(resources, token)


async def context(
    resources: ConnectionResources,
    connection: HTTPConnection,
    principal: Annotated[Principal | None, Depends(_caller)],
) -> GraphQLContext:
    live: LiveHub | None = getattr(connection.app.state, "graphql_live", None)
    return GraphQLContext(resources, principal, BATCHES, live)


class ConnectionSlots:
    """How many WebSockets each signed-in user holds open on this process."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.open: Counter[uuid.UUID] = Counter()

    def take(self, user_id: uuid.UUID) -> bool:
        if self.open[user_id] >= self.per_user:
            return False
        self.open[user_id] += 1
        return True

    def give_back(self, user_id: uuid.UUID) -> None:
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]


class _NotFiled(Exception):
    """An answer that may not be filed in the cache (it has errors), passed back as is."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result


def _persisted_text(data: GraphQLRequestData) -> str | None:
    """The document of a request: its text, or the registered one its hash names."""
    extensions = data.extensions
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    wanted = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if not isinstance(wanted, str):
        return data.query
    text = registered().get(wanted)
    # a mismatch or an unknown hash is the persisted-query extension's to refuse
    return text if data.query in (None, text) else None


class StorefrontGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    def __init__(
        self,
        *args: Any,
        connections_per_user: int,
        max_json_depth: int = 32,
        max_json_array_items: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.slots = ConnectionSlots(connections_per_user)
        self.public = PublicQueryCache()
        self.max_json_depth = max_json_depth
        self.max_json_array_items = max_json_array_items

    def decode_json(self, data: str | bytes) -> object:
        """Request bodies, ``variables`` and ``extensions`` parsed as REST parses them
        (web/limits.py, decisions 0042, 0097): strict JSON (no NaN or Infinity; orjson's
        error is a JSONDecodeError, strawberry's 400) of bounded depth and array length (a
        ``json-too-complex`` problem). Python's parser recursed past its limit on a deeply
        nested body: a RecursionError, a 500 and a traceback per request."""
        document = orjson.loads(data)
        problem = check_structure(document, self.max_json_depth, self.max_json_array_items)
        if problem is not None:
            raise JsonTooComplex(f"The JSON body is refused: {problem}")
        return document

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """An anonymous public catalog query is answered from the response cache, under the
        tags REST's cached reads use (graphql/public_cache.py, decision 0167)."""

        async def run() -> ExecutionResult:
            return await super(StorefrontGraphQLRouter, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )

        query = _persisted_text(request_data)
        filing = (
            None
            if query is None or not isinstance(context, GraphQLContext) or context.principal
            else self.public.key_and_tags(
                query, request_data.variables, request_data.operation_name
            )
        )
        if filing is None:
            return await run()
        key, tags = filing

        ran = False

        async def compute() -> Entry:
            nonlocal ran
            ran = True
            result = await run()
            if result.errors or result.extensions or result.data is None:
                raise _NotFiled(result)
            return make_entry(orjson.dumps(result.data))

        try:
            entry, _source = await context.resources.cache.get_or_compute(
                "graphql", key, tags, compute
            )
        except _NotFiled as refused:
            return refused.result
        except Exception:
            if ran:  # the operation's own failure (strawberry's 400s): as without the cache
                raise
            # the cache failed before running anything: answer without it
            logger.warning("graphql: the response cache failed; answering uncached", exc_info=True)
            return await run()
        return ExecutionResult(data=orjson.loads(entry.body), errors=None)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context, root_value)
        finally:
            # a WebSocket that counted against its user's bound gives its slot back
            if isinstance(context, GraphQLContext) and context.connection_user is not None:
                self.slots.give_back(context.connection_user)
                context.connection_user = None

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """GraphiQL from this origin's own assets (graphql/ide.py), not strawberry's CDN page."""
        return HTMLResponse(graphiql_html())

    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, Any] | None:
        """A WebSocket's caller: ``{"Authorization": "Bearer <access token>"}`` in the
        connection_init payload (browsers cannot set headers on a WebSocket); a bad token
        closes the connection (4403); none: anonymous (public subscriptions only)."""
        params = context.connection_params
        token = _bearer(params.get("Authorization")) if isinstance(params, dict) else None
        if token is not None:
            resources: Resources = context.resources
            try:
                context.principal = await _principal(resources, token)
            except DomainError as exc:
                raise ConnectionRejectionError({"code": exc.slug}) from exc
            user_id = context.principal.user_id
            if not self.slots.take(user_id):
                raise ConnectionRejectionError({"code": "too-many-connections"})
            context.connection_user = user_id
        return await super().on_ws_connect(context)


def graphql_router(settings: Settings) -> StorefrontGraphQLRouter:
    introspection = settings.graphql_introspection
    return StorefrontGraphQLRouter(
        build_schema(
            settings.graphql,
            introspection=introspection,
            rates=(settings.protection.user_rate, settings.protection.anonymous_rate),
        ),
        path=PATH,
        context_getter=context,
        graphql_ide="graphiql" if introspection else None,
        # queries only over GET (cacheable); mutations need POST
        allow_queries_via_get=True,
        include_in_schema=False,
        keep_alive=True,  # pings on idle WebSockets, so proxies keep them open
        keep_alive_interval=15,
        connection_init_wait_timeout=timedelta(seconds=10),
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        connections_per_user=settings.graphql.max_connections_per_user,
        max_json_depth=settings.protection.max_json_depth,
        max_json_array_items=settings.protection.max_json_array_items,
    )
