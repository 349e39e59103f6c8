from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from storefront.kit.inputs import ONE_LINE, STORABLE
from storefront.shops.models import Role

Slug = Annotated[
    str,
    StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])$"),
    STORABLE,
]


class ShopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
        ONE_LINE,
        STORABLE,
    ]
    slug: Slug


class ShopOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime


class ShopSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str


class MyShopOut(BaseModel):
    """One of the caller's memberships: the shop and the caller's role in it."""

    shop: ShopSummaryOut
    role: Role


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    shop_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
    created_at: datetime
