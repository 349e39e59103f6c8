"""The live hub on its own: events reach the subscriptions that want them (registered at
subscribe time), a subscriber that falls too far behind loses its subscription without
holding back the others, and completing all ends every stream and refuses new ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from storefront.events import CloudEvent
from storefront.graphql import live
from storefront.graphql.live import LiveHub, SubscriberTooSlow, live_consumer


def event(shop: str, type_: str = "product.changed") -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        source="test",
        type=type_,
        time=datetime.now(UTC),
        subject="products/1",
        data={"shop_id": shop},
    )


async def test_events_reach_the_subscriptions_that_want_them() -> None:
    hub = LiveHub(None, "test:")
    mine = hub.subscribe(lambda e: e.data["shop_id"] == "a")
    theirs = hub.subscribe(lambda e: e.data["shop_id"] == "b")
    assert hub.subscriptions == 2
    await hub.announce(event("a"))  # no Redis: straight to this process's subscribers
    await hub.announce(event("b"))
    got = await anext(mine)
    assert got.data["shop_id"] == "a"
    assert (await anext(theirs)).data["shop_id"] == "b"
    await mine.aclose()
    assert hub.subscriptions == 1
    await theirs.aclose()


async def test_a_slow_subscriber_is_dropped_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "QUEUE_SIZE", 3)
    hub = LiveHub(None, "test:")
    slow = hub.subscribe(lambda e: True)
    fast = hub.subscribe(lambda e: True)
    for _ in range(5):
        hub.deliver(event("a"))
        await anext(fast)  # keeps up
    # what fitted before the end-of-stream mark, then the end
    assert (await anext(slow)).data["shop_id"] == "a"
    assert (await anext(slow)).data["shop_id"] == "a"
    with pytest.raises(SubscriberTooSlow):
        await anext(slow)
    assert hub.subscriptions == 1
    hub.deliver(event("a"))
    assert (await anext(fast)).data["shop_id"] == "a"


async def test_complete_all_ends_streams_and_refuses_new_ones() -> None:
    hub = LiveHub(None, "test:")
    stream = hub.subscribe(lambda e: True)
    hub.complete_all()
    assert [e async for e in stream] == []
    late = hub.subscribe(lambda e: True)
    assert [e async for e in late] == []
    assert hub.subscriptions == 0


async def test_the_consumer_announces_and_survives_a_redis_error() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    announced: list[CloudEvent] = []

    async def announce(e: CloudEvent) -> None:
        announced.append(e)
        if len(announced) == 2:
            raise RedisConnectionError("down")

    consumer = live_consumer(announce)
    assert consumer.wants("order.placed")
    assert consumer.wants("product.changed")
    first, second = event("a"), event("b")
    await consumer.handle(None, first)  # type: ignore[arg-type]
    await consumer.handle(None, second)  # type: ignore[arg-type]  # logged, not raised
    assert announced == [first, second]
