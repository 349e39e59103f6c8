from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

Password = Annotated[str, Field(min_length=12, max_length=128)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(StrictModel):
    email: Annotated[EmailStr, Field(max_length=320)]
    password: Password
    display_name: DisplayName


class LoginIn(StrictModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


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


class MfaRequiredOut(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str


class MfaVerifyIn(StrictModel):
    mfa_token: Annotated[str, Field(min_length=1, max_length=4096)]
    code: Annotated[str, Field(min_length=1, max_length=32)]


class RefreshIn(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class CodeIn(StrictModel):
    code: Annotated[str, Field(min_length=1, max_length=32)]


class PasswordChangeIn(StrictModel):
    current_password: Annotated[str, Field(min_length=1, max_length=128)]
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
