"""Hold limits: what one customer may hold unpaid in one shop, the caps and when each is
checked (docs/decisions/0118-unpaid-orders-expire-and-hold-limits.md)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import BigInteger, Table, Uuid, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.catalog.service import ReservedItem
from storefront.kit.errors import Conflict
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.settings import OrdersSettings

LIMIT_NAMES = (
    "max_line_quantity",
    "max_order_units",
    "max_pending_units",
    "max_pending_stock_percent",
)


class ShopLimitValues(Protocol):
    """What a shop states of its own limits (None: the platform default). The shops domain's
    ``Shop`` (from ``ShopService.get``) is one; orders never imports shops' models."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def max_line_quantity(self) -> int | None: ...
    @property
    def max_order_units(self) -> int | None: ...
    @property
    def max_pending_units(self) -> int | None: ...
    @property
    def max_pending_stock_percent(self) -> int | None: ...


class HoldLimitExceeded(Conflict):
    slug = "hold-limit-exceeded"
    title = "Hold limit exceeded"


@dataclass(frozen=True, slots=True)
class HoldLimits:
    max_line_quantity: int
    max_order_units: int
    max_pending_units: int
    max_pending_stock_percent: int
    stock_share_floor_units: int

    @classmethod
    def of(cls, shop: ShopLimitValues, defaults: OrdersSettings) -> HoldLimits:
        """The shop's own values where it set them, else the platform defaults."""
        values = {"stock_share_floor_units": defaults.stock_share_floor_units}
        for name in LIMIT_NAMES:
            own = getattr(shop, name)
            values[name] = getattr(defaults, name) if own is None else own
        return cls(**values)

    def check_order(self, lines: Sequence[tuple[uuid.UUID, int]]) -> None:
        """What the order alone may not exceed (before any stock is taken)."""
        for product_id, quantity in lines:
            if quantity > self.max_line_quantity:
                raise _exceeded(
                    f"At most {self.max_line_quantity} units of one product per order.",
                    "max_line_quantity",
                    self.max_line_quantity,
                    product_id,
                )
        units = sum(quantity for _, quantity in lines)
        if units > self.max_order_units:
            raise _exceeded(
                f"At most {self.max_order_units} units per order.",
                "max_order_units",
                self.max_order_units,
            )

    async def check_holdings(
        self,
        session: AsyncSession,
        shop_id: uuid.UUID,
        customer_id: uuid.UUID,
        reserved: Sequence[ReservedItem],
    ) -> None:
        """What the customer's pending orders, this one included, may not exceed. Runs after
        ``reserved`` took its stock and before the new order is written."""
        await _lock_holdings(session, shop_id, customer_id)
        held = await pending_units_by_product(session, shop_id, customer_id)
        total = sum(held.values()) + sum(item.quantity for item in reserved)
        if total > self.max_pending_units:
            raise _exceeded(
                f"At most {self.max_pending_units} units may wait for payment in this shop; "
                "pay or cancel a pending order first.",
                "max_pending_units",
                self.max_pending_units,
            )
        for item in reserved:
            before = held.get(item.product_id, 0)
            # what this customer could have held of the product: the stock left, plus what
            # this order and their other pending orders took from it
            visible = item.stock_left + item.quantity + before
            cap = max(self.stock_share_floor_units, visible * self.max_pending_stock_percent // 100)
            if before + item.quantity > cap:
                raise _exceeded(
                    f"At most {cap} units of product {item.product_id} may wait for payment "
                    f"for one customer ({self.max_pending_stock_percent}% of its stock).",
                    "max_pending_stock_percent",
                    cap,
                    item.product_id,
                )


def _exceeded(
    detail: str, limit: str, maximum: int, product_id: uuid.UUID | None = None
) -> HoldLimitExceeded:
    extra: dict[str, object] = {"limit": limit, "max": maximum}
    if product_id is not None:
        extra["product_id"] = str(product_id)
    return HoldLimitExceeded(detail, extra=extra)


async def _lock_holdings(session: AsyncSession, shop_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    """Serialise the holdings check of one customer in one shop until this transaction ends,
    so two of their orders for different products (no product lock in common) cannot both
    pass ``max_pending_units`` by what the other adds. PostgreSQL: a transaction-level
    advisory lock, taken after the stock (always last, so it cannot deadlock with the
    product row locks). SQLite serialises writers anyway (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(shop_id.bytes + customer_id.bytes, digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    await session.execute(_LOCK_HOLDINGS, {"b_key": key})


async def pending_units_by_product(
    session: AsyncSession, shop_id: uuid.UUID, customer_id: uuid.UUID
) -> dict[uuid.UUID, int]:
    """Units the customer's pending orders in the shop hold, per product."""
    params = {"b_shop_id": shop_id, "b_customer_id": customer_id}
    rows = await session.execute(_PENDING_UNITS, params)
    return {product_id: int(units) for product_id, units in rows}


# both run on every order placed: built once, with bound parameters (decision 0060), and on
# the tables, not the mapped classes: an ORM-enabled SELECT goes through the ORM's compile and
# loading steps on every execution, for rows that are plain (product id, units) pairs
_orders = cast(Table, Order.__table__)
_lines = cast(Table, OrderLine.__table__)
_LOCK_HOLDINGS = select(func.pg_advisory_xact_lock(bindparam("b_key", type_=BigInteger)))
_PENDING_UNITS = (
    select(_lines.c.product_id, func.sum(_lines.c.quantity))
    .select_from(
        # on the shop too: each shop-owned table named by its shop (decision 0170)
        _lines.join(
            _orders,
            and_(_orders.c.shop_id == _lines.c.shop_id, _orders.c.id == _lines.c.order_id),
        )
    )
    .where(
        _orders.c.shop_id == bindparam("b_shop_id", type_=Uuid()),
        _orders.c.customer_id == bindparam("b_customer_id", type_=Uuid()),
        _orders.c.status == OrderStatus.pending,
    )
    .group_by(_lines.c.product_id)
)


# --- the shop's settings (GET/PATCH /shops/{id}/order-limits) --------------------------------

LineQuantity = Annotated[StrictInt, Field(ge=1, le=1000)]
OrderUnits = Annotated[StrictInt, Field(ge=1, le=100_000)]
PendingUnits = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]


class OrderLimitsPatch(BaseModel):
    """A field left out stays as it is; ``null`` goes back to the platform default."""

    model_config = ConfigDict(extra="forbid")

    max_line_quantity: LineQuantity | None = None
    max_order_units: OrderUnits | None = None
    max_pending_units: PendingUnits | None = None
    max_pending_stock_percent: Percent | None = None


class OrderLimitsOut(BaseModel):
    shop_id: uuid.UUID
    max_line_quantity: int = Field(description="Units of one product on one order.")
    max_order_units: int = Field(description="Units on one order.")
    max_pending_units: int = Field(
        description="Units across one customer's pending orders in the shop (the new order "
        "included)."
    )
    max_pending_stock_percent: int = Field(
        description="Share (%) of a product's stock (what is left plus what the customer "
        "holds) that one customer's pending orders may hold; never less than "
        "`stock_share_floor_units`."
    )
    stock_share_floor_units: int = Field(
        description="Units of one product a customer may always hold, whatever the share "
        "(platform setting)."
    )
    payment_window_minutes: int = Field(
        description="How long a pending order waits for payment before it expires and its "
        "stock is released (platform setting)."
    )
    shop_set: list[str] = Field(
        description="The limits this shop set itself; the others are the platform defaults."
    )


def limits_out(shop: ShopLimitValues, defaults: OrdersSettings) -> OrderLimitsOut:
    limits = HoldLimits.of(shop, defaults)
    return OrderLimitsOut(
        shop_id=shop.id,
        max_line_quantity=limits.max_line_quantity,
        max_order_units=limits.max_order_units,
        max_pending_units=limits.max_pending_units,
        max_pending_stock_percent=limits.max_pending_stock_percent,
        stock_share_floor_units=limits.stock_share_floor_units,
        payment_window_minutes=defaults.payment_window_minutes,
        shop_set=[name for name in LIMIT_NAMES if getattr(shop, name) is not None],
    )
