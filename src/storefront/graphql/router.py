"""``/graphql``: the schema over HTTP (POST; GET for queries) with the caller from the same
bearer token as REST, and GraphiQL where introspection is on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from strawberry.fastapi import GraphQLRouter

from storefront.auth.principal import Principal
from storefront.graphql.schema import BATCHES, build_schema
from storefront.identity.deps import _principal, oauth2_scheme
from storefront.settings import Settings
from storefront.web.deps import ResourcesDep
from storefront.web.graphql import GraphQLContext

PATH = "/graphql"


async def _caller(
    resources: ResourcesDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal | None:
    """The caller from the Authorization header exactly as REST reads it (a bad or revoked
    token is REST's 401 problem); no header: anonymous (public reads only)."""
    if token is None:
        return None
    return await _principal(resources, token)


async def context(
    resources: ResourcesDep, principal: Annotated[Principal | None, Depends(_caller)]
) -> GraphQLContext:
    return GraphQLContext(resources, principal, BATCHES)


def graphql_router(settings: Settings) -> GraphQLRouter[GraphQLContext, None]:
    introspection = settings.graphql_introspection
    return GraphQLRouter(
        build_schema(settings.graphql, introspection=introspection),
        path=PATH,
        context_getter=context,
        graphql_ide="graphiql" if introspection else None,
        # queries only over GET (cacheable); mutations need POST
        allow_queries_via_get=True,
        include_in_schema=False,
    )
