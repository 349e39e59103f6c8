"""Demo data for the embedded default: shops, users with known passwords, 1,200 products."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.auth.passwords import PasswordHasher
from storefront.auth.principal import Principal
from storefront.cache import ResponseCache
from storefront.catalog.schemas import ProductIn
from storefront.catalog.service import CatalogService
from storefront.identity.models import User
from storefront.identity.service import IdentityService
from storefront.orders.schemas import AddressIn, OrderIn, OrderLineIn
from storefront.orders.service import OrderService
from storefront.settings import Environment, Settings
from storefront.shops.models import Role
from storefront.shops.service import ShopService
from storefront.vault import PersonalDataVault

DEMO_PASSWORD = "storefront-demo-2026"  # noqa: S105  # nosec B105 - printed to the operator on purpose
PRODUCTS_PER_SHOP = 400
ORDERS_PER_SHOP = 8
CATEGORIES = ("apparel", "books", "coffee", "garden", "kitchen", "toys", "tools", "music")
ADJECTIVES = ("Classic", "Bold", "Quiet", "Bright", "Sturdy", "Tiny", "Grand", "Smooth")
NOUNS = ("Mug", "Lamp", "Notebook", "Kettle", "Scarf", "Chair", "Record", "Trowel", "Puzzle")
SHOPS = (
    ("Acme Outfitters", "acme-outfitters", "EUR"),
    ("Bytes & Books", "bytes-and-books", "USD"),
    ("Corner Coffee", "corner-coffee", "GBP"),
)
USERS = (
    ("admin@storefront.test", "Platform Admin", True),
    ("owner@storefront.test", "Olivia Owner", False),
    ("staff@storefront.test", "Sam Staff", False),
    ("customer@storefront.test", "Casey Customer", False),
)


class DemoDataRefused(RuntimeError):
    """Demo data (known passwords, a demo platform admin) never goes into production."""

    MESSAGE = (
        "demo data is never seeded in production (STOREFRONT_ENVIRONMENT=production): its "
        "accounts have published passwords. Nothing was changed. Create the first platform "
        "admin with `storefront admin create <email>` (docs/operations.md, First deployment)."
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


@dataclass(slots=True)
class SeedReport:
    created: bool
    users: int = 0
    shops: int = 0
    products: int = 0
    orders: int = 0


async def database_is_empty(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one() == 0


def _products(rng: random.Random, currency: str, prefix: str) -> list[ProductIn]:
    return [
        ProductIn(
            sku=f"{prefix}-{n:05d}",
            name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}",
            description="Demo product seeded by `storefront seed`.",
            price_cents=rng.randrange(199, 19999),
            currency=currency,
            stock=rng.randrange(5, 500),
            category=rng.choice(CATEGORIES),
        )
        for n in range(PRODUCTS_PER_SHOP)
    ]


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession],
    passwords: PasswordHasher,
    console: Console,
    *,
    settings: Settings,
    vault: PersonalDataVault,
    cache: ResponseCache | None,
) -> SeedReport:
    """Idempotent: existing users and shops are left as they are. Refuses production
    ``settings`` (DemoDataRefused) before touching the database. ``vault`` seals the
    personal data; ``cache`` (the process's, if any) is invalidated by the writes."""
    if settings.environment is Environment.production:
        raise DemoDataRefused
    rng = random.Random(2026)  # noqa: S311  # nosec B311 - demo data, not security
    report = SeedReport(created=False)
    now = datetime.now(UTC)
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("Seeding demo data", total=len(USERS) + len(SHOPS) * 3)
        principals: dict[str, Principal] = {}
        async with sessionmaker() as session, session.begin():
            identity = IdentityService(session, passwords, vault)
            for email, name, is_admin in USERS:
                user = await identity.by_email(email)
                if user is None:
                    user = await identity.register(
                        email=email, password=DEMO_PASSWORD, display_name=name
                    )
                    user.is_admin = is_admin
                    report.users += 1
                principals[email] = Principal(user.id, user.is_admin, now, None)
                progress.advance(task)

        owner = principals["owner@storefront.test"]
        staff = principals["staff@storefront.test"]
        customer = principals["customer@storefront.test"]
        for name, slug, currency in SHOPS:
            async with sessionmaker() as session, session.begin():
                shops = ShopService(session)
                if await shops.shops.by_slug(slug) is not None:
                    progress.advance(task, 3)
                    continue
                shop = await shops.create(owner, name=name, slug=slug)
                await shops.set_member(owner, shop.id, staff.user_id, Role.staff)
                report.shops += 1
                progress.advance(task)
                items = _products(rng, currency, slug.split("-")[0].upper())
                created, _ = await CatalogService(session, shop.id, cache).upsert_many(items)
                report.products += created
                progress.advance(task)
                catalog, _ = await CatalogService(session, shop.id, cache).list_page(
                    limit=50, after=None, q=None, category=None
                )
            for _ in range(ORDERS_PER_SHOP):
                picks = rng.sample(list(catalog), k=rng.randint(1, 3))
                order = OrderIn(
                    lines=[OrderLineIn(product_id=p.id, quantity=rng.randint(1, 3)) for p in picks],
                    shipping_address=AddressIn(
                        name="Casey Customer",
                        line1="1 Demo Street",
                        city="Springfield",
                        postal_code="12345",
                        country="US",
                    ),
                )
                async with sessionmaker() as session, session.begin():
                    await OrderService(session, shop.id, cache=cache, vault=vault).place(
                        customer, order
                    )
                report.orders += 1
            progress.advance(task)
    report.created = report.users > 0 or report.shops > 0
    return report
