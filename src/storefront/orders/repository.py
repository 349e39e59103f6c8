"""Order queries. The base statement scopes to the shop and, for customers, to their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storefront.kit.db import utcnow
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.vault import DataKeyRow, PersonalDataVault

_EXPORT_ORDER_COLUMNS = (
    Order.id,
    Order.shop_id,
    Order.customer_id,
    Order.status,
    Order.currency,
    Order.total_cents,
    Order.shipping_address_sealed,
    Order.created_at,
    Order.updated_at,
    Order.expires_at,
)
_EXPORT_LINE_COLUMNS = (
    OrderLine.order_id,
    OrderLine.product_id,
    OrderLine.sku,
    OrderLine.name,
    OrderLine.unit_price_cents,
    OrderLine.quantity,
    OrderLine.line_total_cents,
)

_UUID_ARRAY = ARRAY(Uuid())

# (order row, its line rows) for each order of a batch
ExportBatch = list[tuple[Any, list[Any]]]
# an order's id -> its line rows, in position order
LinesByOrder = dict[uuid.UUID, list[Any]]


_orders = cast(Table, Order.__table__)
_lines = cast(Table, OrderLine.__table__)
_data_keys = cast(Table, DataKeyRow.__table__)
# a page's rows: the order's columns, its customer's data key row, one of its lines
_PAGE_ORDER_COLUMNS = tuple(_orders.c[column.key] for column in _EXPORT_ORDER_COLUMNS)
_PAGE_KEY_NAMES = ("key_version", "wrapped_key", "master_version", "destroyed_at")
_PAGE_KEY_COLUMNS = tuple(_data_keys.c[name] for name in _PAGE_KEY_NAMES)
_PAGE_LINE_COLUMNS = tuple(
    _lines.c[name]
    for name in (
        "position",
        "product_id",
        "sku",
        "name",
        "unit_price_cents",
        "quantity",
        "line_total_cents",
    )
)
# (customer scope, status filter, after a cursor, every shop) -> the page statement (built
# on first use)
_PAGE_STATEMENTS: dict[tuple[bool, bool, bool, bool], Any] = {}


def _page_statement(*, own: bool, status: bool, after: bool, every_shop: bool = False) -> Any:
    """One statement for a page: the orders (at most ``b_limit``, in id order) with their
    customer's data key row, joined to their lines in position order. Built once per shape
    on the tables, with bound parameters: building and cache-keying a statement per request
    costs more CPU than running it (decision 0060, "Order paths"). ``every_shop``: not
    narrowed to one shop (a customer's own orders wherever placed)."""
    shape = (own, status, after, every_shop)
    stmt = _PAGE_STATEMENTS.get(shape)
    if stmt is not None:
        return stmt
    orders = select(*_PAGE_ORDER_COLUMNS, *_PAGE_KEY_COLUMNS).select_from(
        _orders.outerjoin(_data_keys, _data_keys.c.subject_id == _orders.c.customer_id)
    )
    if not every_shop:
        orders = orders.where(_orders.c.shop_id == bindparam("b_shop_id", type_=Uuid()))
    if own:
        orders = orders.where(_orders.c.customer_id == bindparam("b_customer_id", type_=Uuid()))
    if status:
        orders = orders.where(
            _orders.c.status == bindparam("b_status", type_=_orders.c.status.type)
        )
    if after:
        orders = orders.where(_orders.c.id > bindparam("b_after", type_=Uuid()))
    limit = bindparam("b_limit", type_=Integer())
    page = orders.order_by(_orders.c.id).limit(limit).subquery("page")
    stmt = (
        select(page, *_PAGE_LINE_COLUMNS)
        .select_from(
            page.outerjoin(
                _lines,  # on the shop too (decision 0170)
                and_(_lines.c.shop_id == page.c.shop_id, _lines.c.order_id == page.c.id),
            )
        )
        .order_by(page.c.id, _lines.c.position)
    )
    _PAGE_STATEMENTS[shape] = stmt
    return stmt


_ORDER_INSERT_COLUMNS = tuple(c.key for c in _orders.c)
_LINE_COLUMNS = tuple(c.key for c in _lines.c if c.key != "order_id")
_INSERT_ORDER = insert(_orders)
_INSERT_LINES = insert(_lines)
# PostgreSQL: the order and its lines in one statement, the order's INSERT as its WITH clause
# (the lines' foreign key is checked at the statement's end, where the order row exists) and
# the lines from one array parameter per column (unnest), so that the statement is the same
# whatever the number of lines and compiled once: a multi-row VALUES is never cached
_LINE_ARRAY_COLUMNS = tuple(name for name in _LINE_COLUMNS if name != "shop_id")


def _build_place_statement() -> Any:
    order = insert(_orders).values(
        {name: bindparam(f"o_{name}", type_=_orders.c[name].type) for name in _ORDER_INSERT_COLUMNS}
    )
    rows = (
        func.unnest(
            *(
                bindparam(f"l_{name}", type_=ARRAY(_lines.c[name].type))
                for name in _LINE_ARRAY_COLUMNS
            )
        )
        .table_valued(*_LINE_ARRAY_COLUMNS)
        .render_derived()
    )
    return (
        insert(_lines)
        .from_select(
            ["order_id", "shop_id", *_LINE_ARRAY_COLUMNS],
            select(
                bindparam("o_id", type_=_orders.c.id.type),
                bindparam("o_shop_id", type_=_orders.c.shop_id.type),
                *(rows.c[name] for name in _LINE_ARRAY_COLUMNS),
            ),
        )
        .add_cte(order.cte("placed_order"))
    )


_PLACE = _build_place_statement()


async def _page_rows(
    session: AsyncSession,
    stmt: Any,
    params: dict[str, Any],
    vault: PersonalDataVault | None,
) -> ExportBatch:
    """A page statement's rows folded into (order row, its line rows), the customers' data
    key rows cached on the session with ``vault``."""
    page: ExportBatch = []
    current: uuid.UUID | None = None
    result = await session.execute(stmt, params)
    # by position: a row's attribute access looks its name up on every call
    at = {name: i for i, name in enumerate(result.keys())}
    id_at, position_at, customer_at = at["id"], at["position"], at["customer_id"]
    key_at = itemgetter(*(at[name] for name in _PAGE_KEY_NAMES))
    remembered: set[uuid.UUID] = set()
    for row in result:
        if row[id_at] != current:
            current = row[id_at]
            page.append((row, []))
            customer_id = row[customer_at]
            if vault is not None and customer_id is not None and customer_id not in remembered:
                remembered.add(customer_id)
                key_version, wrapped_key, master_version, destroyed_at = key_at(row)
                vault.remember(
                    session,
                    customer_id,
                    key_version=key_version,
                    wrapped_key=wrapped_key,
                    master_version=master_version,
                    destroyed_at=destroyed_at,
                )
        if row[position_at] is not None:  # (an order has lines; the join is outer anyway)
            page[-1][1].append(row)
    return page


async def customer_rows(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None,
    vault: PersonalDataVault | None = None,
) -> ExportBatch:
    """A page of one customer's orders in every shop, in id order (UUIDv7: the order they
    were placed in), with their lines, in one query (through ix_orders_customer_id)."""
    params: dict[str, Any] = {"b_customer_id": customer_id, "b_limit": limit}
    if after is not None:
        params["b_after"] = after
    stmt = _page_statement(own=True, status=False, after=after is not None, every_shop=True)
    return await _page_rows(session, stmt, params, vault)


class OrderRepository:
    def __init__(
        self, session: AsyncSession, shop_id: uuid.UUID, *, customer_id: uuid.UUID | None
    ) -> None:
        """``customer_id=None`` means staff scope: every order of the shop."""
        self.session = session
        self.shop_id = shop_id
        self.customer_id = customer_id

    def _base(self) -> Select[Order]:
        stmt = select(Order).where(Order.shop_id == self.shop_id)
        if self.customer_id is not None:
            stmt = stmt.where(Order.customer_id == self.customer_id)
        return stmt

    async def add(self, order: Order) -> Order:
        """Insert a new order and its lines (every column set on ``order``, ids and
        timestamps included) by Core INSERTs built once, instead of the ORM's flush, whose
        unit of work costs more CPU than the statements: on PostgreSQL one statement (the
        order's INSERT as its WITH clause), elsewhere two. ``order`` stays out of the
        session (transient): it is what was written, not an object the session tracks."""
        lines = [
            {"order_id": order.id, **{name: getattr(line, name) for name in _LINE_COLUMNS}}
            for line in order.lines
        ]
        if lines and self.session.get_bind().dialect.name == "postgresql":
            params = {f"o_{name}": getattr(order, name) for name in _ORDER_INSERT_COLUMNS}
            for name in _LINE_ARRAY_COLUMNS:
                params[f"l_{name}"] = [line[name] for line in lines]
            await self.session.execute(_PLACE, params)
            return order
        await self.session.execute(
            _INSERT_ORDER, {name: getattr(order, name) for name in _ORDER_INSERT_COLUMNS}
        )
        await self.session.execute(_INSERT_LINES, lines)
        return order

    async def get(self, order_id: uuid.UUID) -> Order | None:
        stmt = self._base().where(Order.id == order_id).options(selectinload(Order.lines))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ids_among(self, order_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``order_ids`` are in this scope (the shop; a customer's own)."""
        if not order_ids:
            return set()
        stmt = self._base().where(Order.id.in_(order_ids)).with_only_columns(Order.id)
        return set((await self.session.execute(stmt)).scalars().all())

    async def status_of(self, order_id: uuid.UUID) -> OrderStatus | None:
        """The committed status now (a column read, never the session's cached object)."""
        stmt = self._base().where(Order.id == order_id).with_only_columns(Order.status)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def mark_confirmation_sent(self, order_id: uuid.UUID) -> bool:
        """Record that the confirmation email went out; False if already recorded. Leaves
        ``updated_at`` and ``version`` alone: the order itself did not change."""
        stmt = (
            update(Order)
            .where(Order.shop_id == self.shop_id, Order.id == order_id)
            .where(Order.confirmation_sent_at.is_(None))
            .values(confirmation_sent_at=utcnow(), updated_at=Order.updated_at)
        )
        result: Any = await self.session.execute(stmt)
        return bool(result.rowcount)

    async def list_rows(
        self,
        *,
        limit: int,
        after: uuid.UUID | None,
        status: OrderStatus | None,
        vault: PersonalDataVault | None = None,
    ) -> ExportBatch:
        """A page of orders with their lines, as plain rows (no ORM objects), in one query.

        Each row of the page has an order's columns and one of its lines' (the same row
        stands for the order and for its line). With ``vault``, the data key rows of the
        page's customers, read in the same query, are cached on the session
        (``PersonalDataVault.remember``): opening their addresses costs no further query."""
        params: dict[str, Any] = {"b_shop_id": self.shop_id, "b_limit": limit}
        if self.customer_id is not None:
            params["b_customer_id"] = self.customer_id
        if status is not None:
            params["b_status"] = status
        if after is not None:
            params["b_after"] = after
        stmt = _page_statement(
            own=self.customer_id is not None, status=status is not None, after=after is not None
        )
        return await _page_rows(self.session, stmt, params, vault)

    async def _lines_of(self, ids: Sequence[uuid.UUID]) -> LinesByOrder:
        if self.session.get_bind().dialect.name == "postgresql":
            # one array parameter: an IN list is re-rendered on every execution, one bound
            # parameter (and its cast) per id, which costs more CPU than the query itself
            of_ids = OrderLine.order_id == any_(bindparam("order_ids", ids, type_=_UUID_ARRAY))
        else:
            of_ids = OrderLine.order_id.in_(ids)
        lines = await self.session.execute(
            select(*_EXPORT_LINE_COLUMNS)
            .where(of_ids)
            .order_by(OrderLine.order_id, OrderLine.position)
        )
        by_order: LinesByOrder = {}
        for line in lines:
            by_order.setdefault(line.order_id, []).append(line)
        return by_order

    async def stream_batches(
        self, *, status: OrderStatus | None, after: uuid.UUID | None, batch_size: int
    ) -> AsyncGenerator[ExportBatch, None]:
        """Every matching order with its lines, in id order, ``batch_size`` orders at a time.

        The orders come from one server-side cursor (``stream`` + ``yield_per``), so memory
        holds one batch whatever the total; the lines of a batch are read in one query.
        Plain rows, not ORM objects: nothing accumulates in the session.
        """
        stmt = self._base().with_only_columns(*_EXPORT_ORDER_COLUMNS)
        if status is not None:
            stmt = stmt.where(Order.status == status)
        if after is not None:
            stmt = stmt.where(Order.id > after)
        stmt = stmt.order_by(Order.id)
        result = await self.session.stream(stmt, execution_options={"yield_per": batch_size})
        try:
            async for orders in result.partitions():
                by_order = await self._lines_of([row.id for row in orders])
                yield [(order, by_order.get(order.id, [])) for order in orders]
        finally:
            await result.close()

    async def transition(
        self, order_id: uuid.UUID, *, allowed_from: set[OrderStatus], to: OrderStatus
    ) -> bool:
        """Compare-and-set the status; False when the order is not in an allowed state."""
        result = await self.session.execute(
            update(Order)
            .where(
                Order.shop_id == self.shop_id,
                Order.id == order_id,
                Order.status.in_(allowed_from),
            )
            .values(status=to, version=Order.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
