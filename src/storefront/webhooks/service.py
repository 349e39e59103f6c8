"""Webhook subscriptions and publishing (Standard Webhooks: https://www.standardwebhooks.com).

Publishing happens inside the transaction that made the change: one delivery job per
subscribed endpoint is deferred on the session, so it goes out only once the change has
committed (and, through the job outbox, even if the broker was down at that moment). Each job
carries the exact body and message id it will sign, so every retry is byte-identical and a
receiver can drop duplicates by ``webhook-id`` (delivery is at least once).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import record
from storefront.auth.principal import Principal
from storefront.infra.outbound import OutboundClient, OutboundRefused
from storefront.kit.db import utcnow
from storefront.kit.errors import Conflict, NotFound, UnprocessableEntity
from storefront.shops.service import ShopService
from storefront.webhooks.models import WebhookEndpoint
from storefront.webhooks.repository import WebhookRepository
from storefront.webhooks.schemas import WebhookEvent, WebhookIn
from storefront.webhooks.signing import new_secret, secret_box
from storefront.webhooks.tasks import deliver_webhook

if TYPE_CHECKING:
    from storefront.jobs.queue import JobQueue
    from storefront.resources import Resources

MAX_ENDPOINTS_PER_SHOP = 10


class WebhookUrlRefused(UnprocessableEntity):
    slug = "webhook-url-refused"
    title = "Webhook URL not allowed"


class WebhookService:
    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources
        self.repo = WebhookRepository(session)
        self.shops = ShopService(session)

    def _client(self) -> OutboundClient:
        return self.resources.http

    async def create(
        self, principal: Principal, shop_id: uuid.UUID, data: WebhookIn
    ) -> tuple[WebhookEndpoint, str]:
        await self.shops.require_owner(shop_id, principal)
        try:
            self._client().check(data.url)
        except OutboundRefused as exc:
            raise WebhookUrlRefused(f"This webhook URL is not allowed: {exc}.") from exc
        # counted under the shop's lock: concurrent creations cannot all see room for one more
        await self.shops.lock(shop_id)
        if await self.repo.count(shop_id) >= MAX_ENDPOINTS_PER_SHOP:
            raise Conflict(f"A shop has at most {MAX_ENDPOINTS_PER_SHOP} webhook endpoints.")
        secret = new_secret()
        endpoint = WebhookEndpoint(
            shop_id=shop_id,
            url=data.url,
            events=sorted({event.value for event in data.events}),
            secret_sealed=secret_box(self.resources).seal(secret.encode()),
        )
        await self.repo.add(endpoint)
        # the URL is the shop's, not a person's; events as a comma list (details are flat)
        record(
            self.session,
            "webhook.created",
            object_type="webhook_endpoint",
            object_id=endpoint.id,
            shop_id=shop_id,
            details={"events": ",".join(endpoint.events)},
        )
        return endpoint, secret

    async def endpoints(
        self, principal: Principal, shop_id: uuid.UUID
    ) -> Sequence[WebhookEndpoint]:
        await self.shops.require_owner(shop_id, principal)
        return await self.repo.all_of(shop_id)

    async def delete(
        self, principal: Principal, shop_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> None:
        await self.shops.require_owner(shop_id, principal)
        endpoint = await self.repo.get(shop_id, endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint.")
        await self.repo.delete(endpoint)
        record(
            self.session,
            "webhook.deleted",
            object_type="webhook_endpoint",
            object_id=endpoint_id,
            shop_id=shop_id,
        )


def encode_event(event: WebhookEvent, data: Mapping[str, Any], *, at: datetime) -> str:
    envelope = {"type": event.value, "timestamp": at.isoformat(), "data": data}
    return orjson.dumps(envelope).decode()


async def publish(
    session: AsyncSession,
    jobs: JobQueue | None,
    shop_id: uuid.UUID,
    event: WebhookEvent,
    data: Mapping[str, Any],
) -> int:
    """Defer one signed delivery per endpoint of the shop subscribed to ``event``."""
    if jobs is None:
        return 0
    targets = [
        endpoint_id
        for endpoint_id, events in await WebhookRepository(session).subscribers(shop_id)
        if event.value in events
    ]
    if not targets:
        return 0
    at = utcnow()
    body = encode_event(event, data, at=at)
    for endpoint_id in targets:
        jobs.defer(
            session,
            deliver_webhook,
            endpoint_id=str(endpoint_id),
            message_id=f"msg_{uuid.uuid4().hex}",
            event=event.value,
            timestamp=int(at.timestamp()),
            body=body,
        )
    return len(targets)
