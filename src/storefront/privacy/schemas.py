from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, RootModel, StrictBool, field_validator

from storefront.kit.inputs import Text
from storefront.privacy.models import ExportStatus
from storefront.privacy.processing import CONSENT_PURPOSES


class ExportLinks(BaseModel):
    self: str
    download: str | None = None


class ExportOut(BaseModel):
    id: uuid.UUID
    status: ExportStatus
    requested_at: datetime
    completed_at: datetime | None
    expires_at: datetime
    size_bytes: int | None
    links: ExportLinks


class ExportAccepted(BaseModel):
    id: uuid.UUID
    status: ExportStatus


class ConsentsIn(RootModel[dict[Text, StrictBool]]):
    """``{purpose: granted, ...}`` for one or more of the documented purposes."""

    @field_validator("root")
    @classmethod
    def _known_purposes(cls, value: dict[str, bool]) -> dict[str, bool]:
        if not value:
            raise ValueError("name at least one purpose")
        unknown = sorted(set(value) - set(CONSENT_PURPOSES))
        if unknown:
            raise ValueError(
                f"unknown purpose(s) {', '.join(unknown)}; known: {', '.join(CONSENT_PURPOSES)}"
            )
        return value


class ConsentStateOut(BaseModel):
    purpose: str
    description: str
    granted: bool
    updated_at: datetime | None


class ConsentRecordOut(BaseModel):
    purpose: str
    granted: bool
    recorded_at: datetime
    source: str


class ConsentsOut(BaseModel):
    consents: list[ConsentStateOut]
    # the newest changes (a page of them), oldest first; older ones: ?history_cursor=
    history: list[ConsentRecordOut]
    history_next_cursor: str | None = None
