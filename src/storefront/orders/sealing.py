"""Orders' personal data at rest: the shipping address (name, street, phone...) is sealed
with the customer's data key and bound to its order. Once the customer is erased (their key
destroyed) the order reads anonymised: no address, ``customer_erased: true``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.vault import PersonalDataVault

# one batch read keeps at most this many customers' keys cached (a long export stream)
MAX_CACHED_KEYS = 10_000


def address_aad(order_id: uuid.UUID) -> str:
    return f"orders.shipping_address:{order_id}"


async def seal_address(
    session: AsyncSession,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    address: dict[str, Any],
    *,
    vault: PersonalDataVault,
) -> str:
    plaintext = json.dumps(address, separators=(",", ":"), ensure_ascii=False)
    return await vault.seal_for(session, customer_id, plaintext, aad=address_aad(order_id))


async def open_addresses(
    session: AsyncSession,
    rows: Sequence[Any],
    *,
    vault: PersonalDataVault,
) -> list[dict[str, Any] | None]:
    """The address of each order (anything with ``id``, ``customer_id`` and
    ``shipping_address_sealed``), None for an erased customer. One query at most, for the
    keys of every customer not seen yet in this session."""
    opened = await vault.open_many(
        session,
        [(row.customer_id, row.shipping_address_sealed, address_aad(row.id)) for row in rows],
    )
    out: list[dict[str, Any] | None] = []
    for text in opened:
        value = None if text is None else json.loads(text)
        out.append(value if isinstance(value, dict) else None)
    return out
