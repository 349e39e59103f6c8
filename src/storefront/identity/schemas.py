from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Form
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from storefront.kit.inputs import ONE_LINE, STORABLE, Text

Password = Annotated[str, Field(min_length=12, max_length=128), STORABLE]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    ONE_LINE,
    STORABLE,
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(StrictModel):
    email: Annotated[EmailStr, Field(max_length=320), STORABLE]
    password: Password
    display_name: DisplayName


class LoginIn(StrictModel):
    email: Annotated[str, Field(min_length=3, max_length=320), STORABLE]
    password: Annotated[str, Field(min_length=1, max_length=128), STORABLE]


class UserPatch(StrictModel):
    # omitted means "leave unchanged"; an explicit null is refused (the name is required)
    display_name: DisplayName | None = None

    @field_validator("display_name", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("display_name cannot be null; omit it to leave it unchanged")
        return value


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int


class PasswordForm(OAuth2PasswordRequestForm):
    """The OAuth2 password flow's form (``/auth/token``), every field storable text."""

    def __init__(
        self,
        *,
        grant_type: Annotated[str | None, Form(pattern="^password$"), STORABLE] = None,
        username: Annotated[Text, Form()],
        password: Annotated[Text, Form(json_schema_extra={"format": "password"})],
        scope: Annotated[Text, Form()] = "",
        client_id: Annotated[Text | None, Form()] = None,
        client_secret: Annotated[
            Text | None, Form(json_schema_extra={"format": "password"})
        ] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


class MfaRequiredOut(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str


class MfaVerifyIn(StrictModel):
    mfa_token: Annotated[str, Field(min_length=1, max_length=4096), STORABLE]
    code: Annotated[str, Field(min_length=1, max_length=32), STORABLE]


class RefreshIn(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512), STORABLE]


class CodeIn(StrictModel):
    code: Annotated[str, Field(min_length=1, max_length=32), STORABLE]


class PasswordChangeIn(StrictModel):
    current_password: Annotated[str, Field(min_length=1, max_length=128), STORABLE]
    new_password: Password


class TotpEnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip_address: str | None
    current: bool
