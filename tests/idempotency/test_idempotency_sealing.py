"""Stored idempotent responses hold personal data (an order's address): sealed at rest,
bound to their record, still replayed byte for byte."""

from __future__ import annotations

import uuid

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from storefront.idempotency import IdempotencyRecord
from storefront.resources import Resources
from tests.support.factories import Api


async def test_the_stored_response_is_sealed_and_replays(api: Api, resources: Resources) -> None:
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=10)
    key = str(uuid.uuid4())
    first = await api.place_order(customer, shop, (product, 1), key=key)
    assert first.status_code == 201
    address = first.json()["shipping_address"]

    async with resources.sessionmaker() as session:
        [row] = (await session.execute(select(IdempotencyRecord))).scalars().all()
    stored = row.response_body or b""
    assert stored.startswith(b"sb1:")
    for value in address.values():
        if isinstance(value, str) and len(value) > 3:
            assert value.encode() not in stored
    assert first.json()["id"].encode() not in stored

    replay = await api.place_order(customer, shop, (product, 1), key=key)
    assert replay.status_code == 201
    assert replay.content == first.content


async def test_a_sealed_body_moved_to_another_record_does_not_open(
    api: Api, resources: Resources
) -> None:
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=10)
    for _ in range(2):
        assert (await api.place_order(customer, shop, (product, 1))).status_code == 201
    async with resources.sessionmaker() as session:
        first, second = (await session.execute(select(IdempotencyRecord))).scalars().all()
    assert resources.idempotency.sealer is not None
    with pytest.raises(InvalidTag):
        resources.idempotency.sealer.open(second.id, first.response_body or b"")
