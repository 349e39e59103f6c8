"""Sales: a per-shop projection of the order events (orders, revenue and refunds per day
and currency), its read API and its rebuild from the stored event stream."""

from storefront.sales.projection import SALES_PROJECTION, rebuild

CONSUMERS = (SALES_PROJECTION,)

__all__ = ["CONSUMERS", "SALES_PROJECTION", "rebuild"]
