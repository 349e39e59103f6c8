"""Domain events as CloudEvents 1.0 in structured JSON mode (https://cloudevents.io): one
JSON object carries the context attributes and the event's ``data``."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTENT_TYPE = "application/cloudevents+json"  # structured mode (CloudEvents JSON format)
DATA_CONTENT_TYPE = "application/json"
DEFAULT_SOURCE = "/storefront"


class EventType(StrEnum):
    """Every event this release emits; the value is the CloudEvents ``type`` and the
    RabbitMQ routing key. Never rename one: consumers bind to these names."""

    order_placed = "order.placed"
    order_paid = "order.paid"
    order_cancelled = "order.cancelled"
    order_refunded = "order.refunded"
    order_expired = "order.expired"
    product_changed = "product.changed"


EVENT_DESCRIPTIONS: dict[EventType, str] = {
    EventType.order_placed: "An order was placed: its stock is reserved, it awaits payment.",
    EventType.order_paid: "The provider confirmed the payment of an order (``amount_cents``).",
    EventType.order_cancelled: "An order was cancelled (by its customer or the shop's staff).",
    EventType.order_refunded: "A paid order's payment was refunded (``amount_cents``).",
    EventType.order_expired: "A pending order was not paid within its payment window.",
    EventType.product_changed: "A product was created, changed, archived or bulk-upserted.",
}


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event, structured JSON mode, as Storefront publishes it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(description="Unique per event; consumers deduplicate on it.")
    source: str = Field(min_length=1, description="The producing installation.")
    type: str = Field(min_length=1, description="One of the event types (the routing key).")
    time: datetime = Field(description="When the change committed (RFC 3339, UTC).")
    subject: str = Field(description="What changed, e.g. ``orders/<id>``, ``products/<id>``.")
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any] = Field(description="The event's payload (no personal data).")


class Undecodable(ValueError):
    """A message body that is not a CloudEvents JSON event: a poison message."""


def encode(event: CloudEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def decode(body: bytes) -> CloudEvent:
    try:
        return CloudEvent.model_validate_json(body)
    except ValidationError as exc:
        raise Undecodable(
            f"not a CloudEvents 1.0 JSON event: {exc.error_count()} error(s)"
        ) from exc
