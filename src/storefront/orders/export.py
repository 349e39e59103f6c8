"""Streaming order exports: NDJSON (one order with its lines per line) and CSV (one row per
order line), read from a server-side cursor in batches on a session of their own.

The stream opens its own read-only session when the first byte is due and closes it in a
``finally`` (shielded from the cancellation a client disconnect brings), so it never holds
the request's transaction and never pins a pooled connection after it ends. Memory holds one
batch; each batch is written out before the next one is fetched, and uvicorn's flow control
makes a slow client slow the cursor down instead of filling a buffer.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.infra.replica import ReadRouter
from storefront.kit.csv_safe import SafeCsvWriter
from storefront.orders.models import OrderStatus
from storefront.orders.repository import ExportBatch, OrderRepository
from storefront.orders.schemas import AddressIn
from storefront.orders.sealing import MAX_CACHED_KEYS, open_addresses
from storefront.orders.serialise import order_out
from storefront.vault import PersonalDataVault

NDJSON = "application/x-ndjson"
CSV = "text/csv"
BATCH_SIZE = 500

ADDRESS_FIELDS = tuple(AddressIn.model_fields)
CSV_HEADER = (
    "order_id",
    "shop_id",
    "customer_id",
    "status",
    "currency",
    "total_cents",
    "created_at",
    "updated_at",
    "customer_erased",  # true: the customer was erased, the address columns are empty
    *(f"shipping_{name}" for name in ADDRESS_FIELDS),
    "line_number",
    "product_id",
    "sku",
    "name",
    "unit_price_cents",
    "quantity",
    "line_total_cents",
)

# (order row, its line rows, its opened address or None for an erased customer)
Batch = list[tuple[Any, list[Any], dict[str, Any] | None]]


async def open_batch(
    session: AsyncSession, batch: ExportBatch, *, vault: PersonalDataVault
) -> Batch:
    """Open a batch's addresses: one query for the keys of customers not seen before in this
    stream (a bounded number of keys stays cached between batches)."""
    if vault.cached_count(session) > MAX_CACHED_KEYS:
        vault.forget_cached(session)
    addresses = await open_addresses(session, [order for order, _ in batch], vault=vault)
    return [
        (order, lines, address) for (order, lines), address in zip(batch, addresses, strict=True)
    ]


def ndjson_batch(batch: Batch) -> bytes:
    return b"".join(
        order_out(order, lines, address).model_dump_json().encode() + b"\n"
        for order, lines, address in batch
    )


def _cell(value: Any) -> Any:
    return "" if value is None else value


class CsvEncoder:
    """RFC 4180 CSV through the csv module (quoting, embedded quotes, commas, newlines), safe
    to open in a spreadsheet (kit/csv_safe.py: text that would start a formula is
    prefixed with a single quote; text quoted, the numeric columns written as numbers)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = SafeCsvWriter(self._buffer)

    def _take(self) -> bytes:
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def header(self) -> bytes:
        self._writer.writerow(CSV_HEADER)
        return self._take()

    def batch(self, batch: Batch) -> bytes:
        for order, lines, address_in in batch:
            data = order_out(order, lines, address_in).model_dump(mode="json")
            address = data["shipping_address"] or {}
            head = [
                data["id"],
                data["shop_id"],
                _cell(data["customer_id"]),
                data["status"],
                data["currency"],
                data["total_cents"],
                data["created_at"],
                data["updated_at"],
                "true" if data["customer_erased"] else "false",
                *(_cell(address.get(name)) for name in ADDRESS_FIELDS),
            ]
            for number, line in enumerate(data["lines"], start=1):
                self._writer.writerow(
                    [
                        *head,
                        number,
                        line["product_id"],
                        line["sku"],
                        line["name"],
                        line["unit_price_cents"],
                        line["quantity"],
                        line["line_total_cents"],
                    ]
                )
        return self._take()


@dataclass(frozen=True, slots=True)
class OrderExport:
    """What to export (decided and authorized by the service) and how to encode it."""

    shop_id: uuid.UUID
    customer_id: uuid.UUID | None  # None: staff scope, every order of the shop
    status: OrderStatus | None
    after: uuid.UUID | None
    media_type: str
    vault: PersonalDataVault  # opens the addresses

    @property
    def filename(self) -> str:
        return f"orders-{self.shop_id}.{'csv' if self.media_type == CSV else 'ndjson'}"

    async def stream(
        self,
        reads: ReadRouter,
        *,
        min_lsn: Callable[[], int] = lambda: 0,
        batch_size: int | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The export, read in one snapshot on the read replica when it has replayed
        ``min_lsn()`` (asked when the stream starts: the request's own write has committed
        by then), else on the primary (decision 0150)."""
        encode: Callable[[Batch], bytes]
        if self.media_type == CSV:
            encoder = CsvEncoder()
            encode = encoder.batch
            yield encoder.header()
        else:
            encode = ndjson_batch
        session = await reads.session(min_lsn=min_lsn(), snapshot=True)
        try:
            repo = OrderRepository(session, self.shop_id, customer_id=self.customer_id)
            batches = repo.stream_batches(
                status=self.status, after=self.after, batch_size=batch_size or BATCH_SIZE
            )
            try:
                async for batch in batches:
                    yield encode(await open_batch(session, batch, vault=self.vault))
            finally:
                with anyio.CancelScope(shield=True):
                    await batches.aclose()
        finally:
            # shielded: a disconnect cancels this generator, and the connection must still
            # go back to the pool (rolled back) right now, not when the generator is collected
            with anyio.CancelScope(shield=True):
                await session.close()
