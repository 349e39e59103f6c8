"""The webhook delivery job: sign, POST, retry on failure (jobs are retried with back-off)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from storefront.auditlog import record
from storefront.infra.outbound import OutboundRefused
from storefront.jobs.queue import job
from storefront.webhooks import metrics
from storefront.webhooks.repository import WebhookRepository
from storefront.webhooks.signing import secret_box

if TYPE_CHECKING:
    from storefront.resources import Resources

logger = logging.getLogger("storefront.webhooks")


class WebhookDeliveryFailed(Exception):
    """The receiver did not accept the message (non-2xx): the job is retried."""


async def _disable(resources: Resources, endpoint_id: uuid.UUID, reason: str) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await WebhookRepository(session).disable(endpoint_id, reason)
        record(
            session,
            "webhook.disabled",
            object_type="webhook_endpoint",
            object_id=endpoint_id,
            details={"reason": "gone"},
        )


@job("webhooks.deliver")
async def deliver_webhook(
    resources: Resources,
    *,
    endpoint_id: str,
    message_id: str,
    event: str,
    timestamp: int,
    body: str,
) -> None:
    """POST one signed event to one endpoint.

    Idempotent for the receiver: every attempt sends the same ``webhook-id`` and the same
    bytes. 2xx: done. 410 Gone: the receiver unsubscribed, the endpoint is disabled. A
    refused target (it now resolves to a non-public address): dropped, not retried. Anything
    else (other statuses, timeouts, connection errors, the receiver's circuit open or its
    bulkhead full): raised, so the job is retried.
    """
    key = uuid.UUID(endpoint_id)
    async with resources.sessionmaker() as session:
        endpoint = await WebhookRepository(session).by_id(key)
        if endpoint is None or not endpoint.is_active:
            metrics.record_webhook_delivery(event, "skipped")
            logger.info("webhook endpoint %s is gone or disabled; %s dropped", key, message_id)
            return
        url = endpoint.url
        secret = secret_box(resources).open(endpoint.secret_sealed).decode()
    at = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    try:
        # a circuit and a bulkhead per receiver (host and port): one shop's dead receiver
        # never holds back another's deliveries; 5xx and 429 count against its circuit
        target = URL(url)
        async with resources.resilience.guard(
            "webhooks", key=f"{target.host}:{target.port}", exclude=(OutboundRefused,)
        ) as policy:
            timeout = aiohttp.ClientTimeout(
                total=policy.timeout_seconds, sock_connect=policy.connect_timeout_seconds
            )
            status, _ = await resources.http.post(
                url, body=body.encode(), headers=headers, timeout=timeout
            )
            if status >= 500 or status == 429:
                raise WebhookDeliveryFailed(f"endpoint {key} answered {status} to {message_id}")
    except OutboundRefused as exc:
        metrics.record_webhook_delivery(event, "refused")
        logger.warning("webhook %s to endpoint %s refused: %s", message_id, key, exc)
        return
    except Exception:
        metrics.record_webhook_delivery(event, "failed")
        raise
    if 200 <= status < 300:
        metrics.record_webhook_delivery(event, "delivered")
        logger.info("webhook %s delivered to endpoint %s (%s)", message_id, key, status)
        return
    if status == 410:
        metrics.record_webhook_delivery(event, "gone")
        await _disable(resources, key, "receiver answered 410 Gone")
        logger.info("webhook endpoint %s answered 410 Gone: disabled", key)
        return
    metrics.record_webhook_delivery(event, "failed")
    raise WebhookDeliveryFailed(f"endpoint {key} answered {status} to {message_id}")


JOBS = (deliver_webhook,)  # what this domain runs in the job queue
