"""Domain events: recorded in the transaction of the change (:func:`record`), relayed to
RabbitMQ as CloudEvents 1.0 (or delivered in-process on the embedded mode), consumed at most
once per consumer (the inbox), poison messages dead-lettered
(docs/decisions/0140-domain-events-cloudevents.md)."""

from storefront.events.bus import EventBus, events_broker_url
from storefront.events.consumers import Consumer, consume_once
from storefront.events.envelope import CloudEvent, EventType
from storefront.events.models import DomainEvent, InboxEntry
from storefront.events.outbox import record

__all__ = [
    "CloudEvent",
    "Consumer",
    "DomainEvent",
    "EventBus",
    "EventType",
    "InboxEntry",
    "consume_once",
    "events_broker_url",
    "record",
]
