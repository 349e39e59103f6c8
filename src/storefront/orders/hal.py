"""An order as an API v2 resource (HAL, decision 0142): its lines embedded, and the actions
its viewer may take now, from the same rules the service enforces (``CUSTOMER_CANCELLABLE``,
``STAFF_CANCELLABLE``). Payments, which sit above orders, add their own part
(payments/routes_v2.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storefront.kit.money import money
from storefront.orders.models import OrderStatus
from storefront.orders.service import CUSTOMER_CANCELLABLE, STAFF_CANCELLABLE, OrderViewer
from storefront.web.hal import (
    CANCEL,
    CUSTOMER,
    PAY,
    PAYMENTS,
    PRODUCT,
    REFUND,
    SHOP,
    Link,
    Resource,
    ident,
    link,
    resource,
    timestamp,
    v2,
)


def order_path(shop_id: Any, order_id: Any) -> str:
    return f"/shops/{shop_id}/orders/{order_id}"


def actions(order: Any, viewer: OrderViewer) -> dict[str, Link]:
    """The action links ``viewer`` may follow now: absent when not allowed."""
    path = order_path(order.shop_id, order.id)
    status = OrderStatus(order.status)
    is_customer = order.customer_id is not None and order.customer_id == viewer.principal.user_id
    out: dict[str, Link] = {}
    if is_customer and status is OrderStatus.pending:
        out[PAY] = link(v2(f"{path}/payments"), title="pay (POST, Idempotency-Key)")
    if (is_customer and status in CUSTOMER_CANCELLABLE) or (
        viewer.is_staff and status in STAFF_CANCELLABLE
    ):
        out[CANCEL] = link(v2(f"{path}/cancel"), title="cancel (POST)")
    if viewer.is_staff and status is OrderStatus.paid:
        out[REFUND] = link(v2(f"{path}/cancel"), title="cancel and refund (POST)")
    return out


def line_resource(order: Any, line: Any) -> Resource:
    return resource(
        {PRODUCT: link(v2(f"/shops/{order.shop_id}/products/{line.product_id}"))},
        {
            "product_id": ident(line.product_id),
            "sku": line.sku,
            "name": line.name,
            "unit_price": money(line.unit_price_cents, order.currency),
            "quantity": line.quantity,
            "line_total": money(line.line_total_cents, order.currency),
        },
    )


def order_resource(
    order: Any,
    lines: Sequence[Any],
    address: dict[str, Any] | None,
    viewer: OrderViewer,
    *,
    payments: Sequence[Resource] | None = None,
) -> Resource:
    """``order`` (ORM object or row) with ``lines``; ``payments`` embedded when given (a
    listing leaves them to the ``sf:payments`` link)."""
    shop = f"/shops/{order.shop_id}"
    path = order_path(order.shop_id, order.id)
    embedded: dict[str, list[Resource]] = {"lines": [line_resource(order, x) for x in lines]}
    if payments is not None:
        embedded["payments"] = list(payments)
    return resource(
        {
            "self": link(v2(path)),
            "collection": link(v2(f"{shop}/orders")),
            SHOP: link(v2(shop)),
            PAYMENTS: link(v2(f"{path}/payments")),
            # the customer, where the caller may see them: their own account (no v2
            # resource shows a user to anyone else)
            **(
                {CUSTOMER: link(v2("/users/me"), title="you, the customer")}
                if order.customer_id is not None and order.customer_id == viewer.principal.user_id
                else {}
            ),
            **actions(order, viewer),
        },
        {
            "id": ident(order.id),
            "shop_id": ident(order.shop_id),
            "customer_id": ident(order.customer_id),
            "status": OrderStatus(order.status).value,
            "total": money(order.total_cents, order.currency),
            "shipping_address": address,
            "customer_erased": address is None,
            "created_at": timestamp(order.created_at),
            "updated_at": timestamp(order.updated_at),
            "expires_at": timestamp(order.expires_at),
        },
        embedded,
    )
