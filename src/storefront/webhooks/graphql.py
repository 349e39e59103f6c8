"""A shop's webhook endpoints in the GraphQL schema: ``webhookEndpoints(shopId)``,
``createWebhookEndpoint`` (the signing secret shown once, as POST /shops/{id}/webhooks) and
``deleteWebhookEndpoint``, for the same managers (the shop's owners) through
WebhookService."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

import strawberry

from storefront.shops.service import ShopService
from storefront.web.graphql import GraphQLContext
from storefront.webhooks.schemas import WebhookEvent as EventValue
from storefront.webhooks.schemas import WebhookIn, WebhookOut
from storefront.webhooks.service import WebhookService


@strawberry.enum(description="The order events an endpoint may subscribe to.")
class WebhookEvent(Enum):
    ORDER_PLACED = "order.placed"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_EXPIRED = "order.expired"


@strawberry.type(description="An HTTPS endpoint of the shop's, sent the events it subscribes to.")
class WebhookEndpoint:
    id: strawberry.ID = strawberry.field(description="The endpoint's id.")
    shop_id: strawberry.ID = strawberry.field(description="The shop.")
    url: str = strawberry.field(description="Where the events are POSTed (HTTPS).")
    events: list[WebhookEvent] = strawberry.field(description="The events it subscribes to.")
    is_active: bool = strawberry.field(
        description="False once disabled (see disabledReason); nothing is sent to it then."
    )
    disabled_reason: str | None = strawberry.field(description="Why it was disabled.")
    created_at: datetime = strawberry.field(description="When it was added.")

    @classmethod
    def of(cls, out: WebhookOut) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(str(out.id)),
            shop_id=strawberry.ID(str(out.shop_id)),
            url=out.url,
            events=[WebhookEvent(event.value) for event in out.events],
            is_active=out.is_active,
            disabled_reason=out.disabled_reason,
            created_at=out.created_at,
        )


@strawberry.type(description="A new endpoint and its signing secret (shown this once only).")
class CreatedWebhookEndpoint:
    endpoint: WebhookEndpoint = strawberry.field(description="The new endpoint.")
    secret: str = strawberry.field(
        description="The Standard Webhooks signing secret (whsec_...); never shown again."
    )


@strawberry.type
class WebhookQuery:
    @strawberry.field(
        description="The shop's webhook endpoints, at most 10 (the shop's owners, as GET "
        "/shops/{id}/webhooks)."
    )
    async def webhook_endpoints(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID
    ) -> list[WebhookEndpoint]:
        context = info.context
        principal = context.require_principal()
        async with context.reading() as session:
            await ShopService(session).require_owner(shop_id, principal)
            rows = await WebhookService(session, context.resources).endpoints(principal, shop_id)
            return [WebhookEndpoint.of(WebhookOut.model_validate(row)) for row in rows]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="Subscribe an HTTPS endpoint to order events (the shop's owners, as POST "
        "/shops/{id}/webhooks; at most 10 a shop)."
    )
    async def create_webhook_endpoint(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        url: str,
        events: list[WebhookEvent],
    ) -> CreatedWebhookEndpoint:
        context = info.context
        principal = context.require_principal()
        body = WebhookIn(url=url, events=[EventValue(event.value) for event in events])
        async with context.writing() as session:
            await ShopService(session).require_owner(shop_id, principal)
            service = WebhookService(session, context.resources)
            endpoint, secret = await service.create(principal, shop_id, body)
            out = WebhookOut.model_validate(endpoint)
        return CreatedWebhookEndpoint(endpoint=WebhookEndpoint.of(out), secret=secret)

    @strawberry.mutation(
        description="Delete one of the shop's endpoints (the shop's owners, as DELETE "
        "/shops/{id}/webhooks/{endpoint_id}): true once deleted."
    )
    async def delete_webhook_endpoint(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, id: uuid.UUID
    ) -> bool:
        context = info.context
        principal = context.require_principal()
        async with context.writing() as session:
            await ShopService(session).require_owner(shop_id, principal)
            await WebhookService(session, context.resources).delete(principal, shop_id, id)
        return True
