"""The one place the domains' GraphQL parts become a schema (decision 0145): each domain's
query and mutation types merged, and each relation's loader key paired with the batch of
the domain that owns its rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from graphql import GraphQLError
from storefront.audit import graphql as audit
from storefront.catalog import graphql as catalog
from storefront.graphql.errors import ProblemErrors
from storefront.graphql.limits import CostCharge, QuerySizeLimit, document_limits_rule
from storefront.graphql.observability import OperationTelemetry
from storefront.graphql.persisted import PersistedQueries
from storefront.graphql.storable import StorableStrings
from storefront.identity import graphql as identity
from storefront.orders import graphql as orders
from storefront.payments import graphql as payments
from storefront.privacy import graphql as privacy
from storefront.sales import graphql as sales
from storefront.settings import GraphQLSettings
from storefront.shops import graphql as shops
from storefront.web.graphql import SCALAR_MAP, BatchFactory, GraphQLContext, LoaderKey
from storefront.webhooks import graphql as webhooks


# the caller, from four domains: shops knows who they are and their shops, orders (above
# shops, which may not import it) their orders, identity their sessions, privacy their
# exports and consents
@strawberry.type(
    name="Viewer", description="The signed-in caller: who they are, their shops, their orders."
)
class Viewer(shops.Viewer, orders.ViewerOrders, identity.ViewerAccount, privacy.ViewerPrivacy):
    pass


def _viewer(info: strawberry.Info[GraphQLContext, None]) -> Viewer:
    principal = info.context.require_principal()
    return Viewer(id=strawberry.ID(str(principal.user_id)), is_admin=principal.is_admin)


@strawberry.type
class ViewerQuery:
    viewer: Viewer = strawberry.field(
        resolver=_viewer,
        description="The caller (an error with code unauthenticated if anonymous).",
    )


Query = merge_types(
    "Query",
    (
        ViewerQuery,
        shops.ShopQuery,
        catalog.CatalogQuery,
        orders.OrderQuery,
        sales.SalesQuery,
        audit.AuditQuery,
        webhooks.WebhookQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        identity.IdentityMutation,
        privacy.PrivacyMutation,
        shops.ShopMutation,
        catalog.CatalogMutation,
        catalog.CatalogBulkMutation,
        orders.OrderMutation,
        payments.PaymentMutation,
        webhooks.WebhookMutation,
    ),
)

Subscription = merge_types("Subscription", (catalog.CatalogSubscription, orders.OrderSubscription))

BATCHES: dict[LoaderKey[Any, Any], BatchFactory] = {
    shops.SHOP: shops.shops_by_id,
    shops.PROFILE: shops.profiles_by_id,
    catalog.PRODUCT: catalog.products_by_id,
    catalog.SHOP_OF_PRODUCT: shops.shop_types_by_id,
    orders.PAYMENTS: payments.payments_of_orders,
}


# parsed documents and their validation kept per process, by text (at most this many)
DOCUMENT_CACHE_SIZE = 256


class StorefrontSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Nothing: ProblemErrors logs what is unexpected, and a client's mistake (a
        not-found, a refused query) is not the server's error."""


def build_schema(
    settings: GraphQLSettings | None = None,
    *,
    introspection: bool = True,
    rates: tuple[str, str] | None = None,
    document_cache: bool = True,
) -> StorefrontSchema:
    """The schema with its bounds; ``introspection=False`` refuses introspection queries
    (production, unless STOREFRONT_GRAPHQL__INTROSPECTION says otherwise); ``rates`` (the
    user and anonymous rate-limit policies) charge a costly operation's extra calls;
    ``document_cache``: parsed and validated documents kept by text."""
    settings = settings or GraphQLSettings()
    rules: list[Any] = [
        document_limits_rule(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_cost=settings.max_cost,
        )
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Callable[[], SchemaExtension]] = [
        OperationTelemetry,
        lambda: PersistedQueries(persisted_only=settings.persisted_only),
        lambda: QuerySizeLimit(max_chars=settings.max_query_chars),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: AddValidationRules(rules),
        ProblemErrors,
    ]
    if document_cache:
        # a document is parsed and validated once per text, after the size check and with
        # the token bound above: validation was half of a small query's time (decision
        # 0168); off only to measure what it saves (bench/profile_graphql.py)
        extensions[4:4] = [
            lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
            lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        ]
    if rates is not None:
        user_rate, anonymous_rate = rates
        extensions.append(
            lambda: CostCharge(
                cost_per_call=settings.cost_per_call,
                user_rate=user_rate,
                anonymous_rate=anonymous_rate,
            )
        )
    # last, so that its check after validation runs first: an operation holding text the
    # database cannot store is refused before it is charged or run (decision 0095)
    extensions.append(StorableStrings)
    # factories: a fresh extension per operation
    return StorefrontSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=extensions,
    )


def sdl() -> str:
    """The schema's SDL as committed in src/storefront/graphql/schema.graphql."""
    return build_schema().as_str() + "\n"


if (
    __name__ == "__main__"
):  # python -m storefront.graphql.schema > src/storefront/graphql/schema.graphql
    import sys

    sys.stdout.write(sdl())
