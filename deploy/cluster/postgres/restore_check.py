"""The application side of the backup and restore drill (restore-drill.sh), run with the
project's venv and the drill's settings (STOREFRONT_DATABASE_URL, the master keys):

  write --customers N   registers N customers and places two orders for each through the
                        app's services (addresses sealed with each customer's data key)
  counts                prints the row counts the drill compares, one ``table count`` a line
  check --sample N      opens the shipping address of N orders picked at random with the
                        master key; exit 1 if one does not decrypt
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, text

from storefront.auth.principal import Principal
from storefront.catalog.models import Product
from storefront.identity.service import IdentityService
from storefront.orders.models import Order
from storefront.orders.schemas import AddressIn, OrderIn, OrderLineIn
from storefront.orders.sealing import open_addresses
from storefront.orders.service import OrderService
from storefront.resources import open_resources
from storefront.settings import get_settings
from storefront.shops.models import Shop

COUNTED = ("users", "data_keys", "shops", "products", "orders", "order_lines", "audit_events")


async def write(customers: int) -> int:
    settings = get_settings()
    async with open_resources(settings, role="cli") as resources:
        async with resources.sessionmaker() as session:
            shop = (await session.execute(select(Shop).order_by(Shop.slug).limit(1))).scalar()
            if shop is None:
                print("no shop: run `storefront seed` first", file=sys.stderr)
                return 1
            products = (
                (await session.execute(select(Product).where(Product.shop_id == shop.id).limit(20)))
                .scalars()
                .all()
            )
        placed = 0
        for i in range(customers):
            tag = uuid.uuid4().hex[:8]
            async with resources.sessionmaker() as session, session.begin():
                user = await IdentityService(
                    session, resources.passwords, resources.vault
                ).register(
                    email=f"drill-{tag}@storefront.test",
                    password=f"drill-pass-{tag}-{tag}",
                    display_name=f"Drill Customer {tag}",
                )
            principal = Principal(user.id, False, datetime.now(UTC), None)
            for j in range(2):
                product = products[(2 * i + j) % len(products)]
                order = OrderIn(
                    lines=[OrderLineIn(product_id=product.id, quantity=1)],
                    shipping_address=AddressIn(
                        name=f"Drill Customer {tag}",
                        line1=f"{i + 1} Restore Street",
                        city="Recovery",
                        postal_code=f"{10000 + i}",
                        country="DE",
                    ),
                )
                async with resources.sessionmaker() as session, session.begin():
                    await OrderService(
                        session, shop.id, cache=resources.cache, vault=resources.vault
                    ).place(principal, order)
                placed += 1
    print(f"registered {customers} customers, placed {placed} orders")
    return 0


async def counts() -> int:
    settings = get_settings()
    async with (
        open_resources(settings, role="cli") as resources,
        resources.sessionmaker() as session,
    ):
        for table in COUNTED:
            n = (await session.execute(text(f"select count(*) from {table}"))).scalar()  # noqa: S608
            print(f"{table} {n}")
    return 0


async def check(sample: int) -> int:
    settings = get_settings()
    async with (
        open_resources(settings, role="cli") as resources,
        resources.sessionmaker() as session,
    ):
        total = (await session.execute(select(func.count()).select_from(Order))).scalar()
        rows = (
            await session.execute(
                select(Order.id, Order.customer_id, Order.shipping_address_sealed)
                .order_by(func.random())
                .limit(sample)
            )
        ).all()
        opened = await open_addresses(session, rows, vault=resources.vault)
    bad = [str(row.id) for row, address in zip(rows, opened, strict=True) if not address]
    print(
        f"orders sampled: {len(rows)} of {total}; addresses decrypted with the master key: "
        f"{len(rows) - len(bad)}"
    )
    if bad or not rows:
        print(f"not decrypted: {bad}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write").add_argument("--customers", type=int, default=10)
    sub.add_parser("counts")
    sub.add_parser("check").add_argument("--sample", type=int, default=20)
    args = parser.parse_args()
    if args.command == "write":
        return asyncio.run(write(args.customers))
    if args.command == "counts":
        return asyncio.run(counts())
    return asyncio.run(check(args.sample))


if __name__ == "__main__":
    sys.exit(main())
