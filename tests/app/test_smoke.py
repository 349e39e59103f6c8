from __future__ import annotations

from tests.support.factories import Api, shop_with_staff


async def test_order_flow_end_to_end(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=5, price_cents=250)
    customer = await api.user()
    order = await api.order(customer, shop, (product, 2))
    assert order["total_cents"] == 500
    assert order["status"] == "pending"
    r = await api.client.get(f"/api/v1/shops/{shop['id']}/products/{product['id']}")
    assert r.json()["stock"] == 3
