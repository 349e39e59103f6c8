"""Payments against the real localstripe emulator (a process of this test worker's own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from storefront.resources import Resources
from storefront.sales import SALES_PROJECTION
from storefront.settings import Settings
from tests.conftest import hardened_overrides, make_settings
from tests.support.events import eventually, relayed_and_consumed
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.servers import LocalStripe


@pytest.fixture
def settings(database_url: str, backend: str, localstripe: LocalStripe) -> Settings:
    """The shared test settings (hardened on PostgreSQL) paying through the emulator."""
    extra = hardened_overrides() if backend == "postgres" else {}
    return make_settings(database_url, payments=localstripe.settings(), **extra)


@dataclass
class World:
    owner: UserHandle
    staff: UserHandle
    shop: dict[str, Any]
    customer: UserHandle
    order: dict[str, Any]
    product: dict[str, Any]


@pytest.fixture
async def world(api: Api, resources: Resources) -> AsyncIterator[World]:
    owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=1250, stock=10, currency="EUR")
    customer = await api.user()
    order = await api.order(customer, shop, (product, 2))
    yield World(owner, staff, shop, customer, order, product)
    # the order events the test caused (order.paid, order.refunded...) are consumed before
    # the app empties the tables: one delivered afterwards would leave a sales row behind
    await eventually(
        lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
        bool,
        what="order events relayed and consumed",
    )
