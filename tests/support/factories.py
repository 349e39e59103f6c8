"""Factories: payloads from polyfactory, and data built through the public API.

Users are the exception: ``Api.user`` writes them through the identity service, with a
password hash made once per worker, and mints their access token with the app's
TokenService (no session, no refresh token, no sign-in events). ``Api.user_over_http``
registers and signs in the way a client does, for the tests that need what sign-in makes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from polyfactory import Use
from polyfactory.factories.pydantic_factory import ModelFactory

from storefront.auth.passwords import PasswordHasher
from storefront.catalog.schemas import ProductIn
from storefront.identity.service import IdentityService
from storefront.kit.db import session_scope
from storefront.orders.schemas import AddressIn
from storefront.resources import Resources
from tests.support.paths import V1 as V1  # re-exported: the tests import it from here

PASSWORD = "correct-horse-battery-staple"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ProductInFactory(ModelFactory[ProductIn]):
    __check_model__ = True
    sku = Use(lambda: unique("SKU"))
    name = Use(lambda: unique("Product"))
    description = "A product made by the test factory."
    price_cents = Use(ModelFactory.__random__.randint, 100, 10_000)
    currency = "EUR"
    stock = 100
    category = Use(ModelFactory.__random__.choice, ["books", "coffee", "tools"])


class AddressInFactory(ModelFactory[AddressIn]):
    __check_model__ = True
    name = "Ada Lovelace"
    line1 = "12 Analytical Row"
    line2 = None
    city = "London"
    postal_code = "N1 9GU"
    country = "GB"
    phone = "+44 20 7946 0000"


@dataclass
class UserHandle:
    id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


_password_hashes: dict[tuple[int, int, int], str] = {}


class _KnownHash:
    """Hands out a hash of ``PASSWORD`` made earlier (argon2 is the costly part of a user)."""

    def __init__(self, hashed: str) -> None:
        self.hashed = hashed

    async def hash(self, password: str) -> str:
        assert password == PASSWORD, "factory users all have the factory password"
        return self.hashed


async def password_hash(resources: Resources) -> str:
    """A hash of ``PASSWORD`` with the app's hashing parameters, made once per worker."""
    auth = resources.settings.auth
    params = (auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism)
    if params not in _password_hashes:
        _password_hashes[params] = await resources.passwords.hash(PASSWORD)
    return _password_hashes[params]


async def make_user(
    resources: Resources, email: str | None = None, *, display_name: str = "Test User"
) -> UserHandle:
    """A registered user (as /auth/register leaves one, its audit entry included) and an
    access token minted for it: no sign-in, so no session and no refresh token."""
    email = email or f"{unique('user')}@example.com"
    hasher = cast(PasswordHasher, _KnownHash(await password_hash(resources)))
    scope = session_scope(resources.sessionmaker)
    session = await anext(scope)
    try:
        user = await IdentityService(session, hasher, resources.vault).sign_up(
            email=email, password=PASSWORD, display_name=display_name
        )
    except BaseException as exc:
        await scope.athrow(exc)
        raise
    await anext(scope, None)  # commit
    await resources.security.keys.ensure_loaded()
    token = resources.tokens.issue(str(user.id), admin=user.is_admin)  # as a sign-in mints it
    return UserHandle(str(user.id), email.lower(), token)


@dataclass
class Api:
    """Builds test data through the HTTP API, as a client would; users through the identity
    service when it is given the app's ``resources`` (the ``api`` fixture does)."""

    client: httpx2.AsyncClient
    resources: Resources | None = None

    async def user(
        self, email: str | None = None, *, display_name: str = "Test User"
    ) -> UserHandle:
        if self.resources is None:
            return await self.user_over_http(email, display_name=display_name)
        return await make_user(self.resources, email, display_name=display_name)

    async def user_over_http(
        self, email: str | None = None, *, display_name: str = "Test User"
    ) -> UserHandle:
        """Registered and signed in over HTTP: a session, a refresh token, sign-in events."""
        email = email or f"{unique('user')}@example.com"
        r = await self.client.post(
            f"{V1}/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": display_name},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        r = await self.client.post(f"{V1}/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return UserHandle(user_id, email.lower(), r.json()["access_token"])

    async def shop(self, owner: UserHandle, **overrides: Any) -> dict[str, Any]:
        body = {"name": "Test Shop", "slug": unique("shop").lower(), **overrides}
        r = await self.client.post(f"{V1}/shops", json=body, headers=owner.auth)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def add_member(
        self, owner: UserHandle, shop: dict[str, Any], user: UserHandle, role: str = "staff"
    ) -> None:
        r = await self.client.put(
            f"{V1}/shops/{shop['id']}/members/{user.id}", json={"role": role}, headers=owner.auth
        )
        assert r.status_code == 200, r.text

    async def product(
        self, staff: UserHandle, shop: dict[str, Any], **overrides: Any
    ) -> dict[str, Any]:
        body = ProductInFactory.build(**overrides).model_dump()
        r = await self.client.post(
            f"{V1}/shops/{shop['id']}/products", json=body, headers=staff.auth
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    @staticmethod
    def order_body(*lines: tuple[dict[str, Any], int], **address: Any) -> dict[str, Any]:
        return {
            "lines": [{"product_id": p["id"], "quantity": q} for p, q in lines],
            "shipping_address": AddressInFactory.build(**address).model_dump(mode="json"),
        }

    async def place_order(
        self,
        customer: UserHandle,
        shop: dict[str, Any],
        *lines: tuple[dict[str, Any], int],
        key: str | None = None,
    ) -> httpx2.Response:
        return await self.client.post(
            f"{V1}/shops/{shop['id']}/orders",
            json=self.order_body(*lines),
            headers={**customer.auth, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def order(
        self, customer: UserHandle, shop: dict[str, Any], *lines: tuple[dict[str, Any], int]
    ) -> dict[str, Any]:
        r = await self.place_order(customer, shop, *lines)
        assert r.status_code == 201, r.text
        return dict(r.json())


async def shop_with_staff(api: Api) -> tuple[UserHandle, UserHandle, dict[str, Any]]:
    """An owner, a staff member and their shop."""
    owner = await api.user()
    staff = await api.user()
    shop = await api.shop(owner)
    await api.add_member(owner, shop, staff)
    return owner, staff, shop
