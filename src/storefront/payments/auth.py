"""Who may pay and read an order's payments, as route dependencies (the path's
``{shop_id}``). Both start from the order reader: someone else's order is 404."""

from __future__ import annotations

from storefront.orders.auth import OrderReader

OrderPayer = OrderReader
"""Anyone signed in who can see the order; the service narrows it to the order's customer
(the shop's staff see the order but do not pay it: 404)."""
PaymentsReader = OrderReader
"""The order's customer and the shop's staff."""
OrderCanceller = OrderReader
"""The order's customer (pending) and staff (pending or paid: refunded); orders' rules."""
