"""Without STOREFRONT_PAYMENTS__SECRET_KEY no order can be paid: 503, nothing written."""

from __future__ import annotations

import httpx2

from tests.conftest import make_settings
from tests.support.apps import running_app
from tests.support.factories import Api, shop_with_staff
from tests.support.orders import order_status_in_db
from tests.support.payments import pay, payments_in_db


async def test_paying_without_a_provider_is_503_and_changes_nothing(database_url: str) -> None:
    settings = make_settings(database_url)
    assert settings.payments.secret_key is None
    async with running_app(settings) as app:
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            resources = app.state.resources
            api = Api(c, resources)
            _owner, staff, shop = await shop_with_staff(api)
            product = await api.product(staff, shop, price_cents=500, stock=3, currency="EUR")
            customer = await api.user()
            order = await api.order(customer, shop, (product, 1))
            r = await pay(api, customer, shop, order["id"])
            assert r.status_code == 503, r.text
            assert r.json()["type"].endswith("/payments-unavailable")
            assert await payments_in_db(resources, order["id"]) == []
            assert await order_status_in_db(resources, order["id"]) == "pending"
