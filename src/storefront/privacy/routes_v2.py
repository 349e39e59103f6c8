"""The caller's privacy operations in API v2 (HAL, decisions 0142 and 0206): data exports,
consents and erasure, over v1's services (``ExportService``, ``ConsentService``,
``ErasureService``) and dependencies. An export links its download once it is ready; the
consents link their next page of history."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from storefront.identity.deps import Client, CurrentPrincipal
from storefront.kit.db import utcnow
from storefront.kit.negotiation import negotiate
from storefront.privacy.consents import ConsentService
from storefront.privacy.models import DataExport, ExportStatus
from storefront.privacy.routes import (
    HISTORY_PAGE,
    HistoryCursor,
    HistoryLimit,
    _consents,
    _settings,
)
from storefront.privacy.schemas import ConsentsIn, ConsentsOut
from storefront.privacy.service import ErasureService, ExportService, effective_status
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.hal import (
    CURIES,
    DOWNLOAD,
    ME,
    Accepted,
    HalOut,
    HALResponse,
    Resource,
    hal_response,
    ident,
    link,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.responses import PERSONAL
from storefront.web.route_policy import route_policy

router = APIRouter(tags=["privacy (v2)"])
ARCHIVE = "application/json"
EXPORT_ID = "0190a1b2-c3d4-7e5f-8a9b-0000000000e1"
EXPORT_URL = f"/api/v2/users/me/exports/{EXPORT_ID}"


class ExportV2(HalOut):
    id: str
    status: str
    requested_at: str
    completed_at: str | None
    expires_at: str
    size_bytes: int | None


class ConsentStateV2(BaseModel):
    purpose: str
    description: str
    granted: bool
    updated_at: str | None


class ConsentRecordV2(BaseModel):
    purpose: str
    granted: bool
    recorded_at: str
    source: str


class ConsentsV2(HalOut):
    consents: list[ConsentStateV2]
    history: list[ConsentRecordV2] = Field(description="the newest changes, oldest first")


def export_resource(export: DataExport) -> Resource:
    current = effective_status(export, utcnow())
    path = f"/users/me/exports/{export.id}"
    links: dict[str, Any] = {"self": link(v2(path)), ME: link(v2("/users/me"))}
    if current is ExportStatus.ready:
        links[DOWNLOAD] = link(v2(f"{path}/download"), title="the archive (GET, JSON)")
    return resource(
        links,
        {
            "id": ident(export.id),
            "status": current.value,
            "requested_at": timestamp(export.requested_at),
            "completed_at": timestamp(export.completed_at),
            "expires_at": timestamp(export.expires_at),
            "size_bytes": export.size_bytes if current is ExportStatus.ready else None,
        },
    )


EXPORT_EXAMPLE = {
    "_links": {
        "self": {"href": EXPORT_URL},
        "sf:me": {"href": "/api/v2/users/me"},
        "sf:download": {"href": f"{EXPORT_URL}/download"},
        "curies": CURIES,
    },
    "id": EXPORT_ID,
    "status": "ready",
    "requested_at": "2026-12-07T05:15:05.123456Z",
    "completed_at": "2026-12-07T05:15:09.000000Z",
    "expires_at": "2026-12-14T05:15:09.000000Z",
    "size_bytes": 18342,
}


@router.post(
    "/users/me/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportV2,
    response_class=HALResponse,
    responses=problems(
        401, ok=202, example={**EXPORT_EXAMPLE, "status": "pending", "completed_at": None}
    ),
    summary="Request a copy of everything held about you (GDPR 15, 20); follow `self`",
)
@route_policy(rate="expensive")
async def request_export(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    service = ExportService(session, resources, _settings(request))
    export = await service.request(principal.user_id)
    return hal_response(
        export_resource(export),
        media_type,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": v2(f"/users/me/exports/{export.id}"), **PERSONAL},
    )


@router.get(
    "/users/me/exports/{export_id}",
    response_model=ExportV2,
    response_class=HALResponse,
    responses=problems(401, 404, example=EXPORT_EXAMPLE),
    summary="An export's status; `sf:download` once it is ready",
)
async def get_export(
    export_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    export = await ExportService(session, resources, _settings(request)).get(
        principal.user_id, export_id
    )
    return hal_response(export_resource(export), media_type, headers=PERSONAL)


@router.get(
    "/users/me/exports/{export_id}/download",
    response_class=Response,
    responses={
        200: {
            "description": "The archive (JSON, an attachment)",
            "content": {ARCHIVE: {"example": {"account": {"email": "ada@example.com"}}}},
        },
        **problems(401, 404, 410),
    },
    summary="Download a ready export (the target of `sf:download`; 410 once it has expired)",
)
async def download_export(
    export_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    negotiate(request.headers.get("accept"), (ARCHIVE,))  # the archive is JSON only
    body = await ExportService(session, resources, _settings(request)).download(
        principal.user_id, export_id
    )
    return Response(
        body,
        media_type=ARCHIVE,
        headers={
            "Content-Disposition": f'attachment; filename="storefront-export-{export_id}.json"',
            "Vary": "Accept",
            **PERSONAL,
        },
    )


def consents_resource(request: Request, out: ConsentsOut) -> Resource:
    path = "/users/me/consents"
    links: dict[str, Any] = {
        "self": link(v2(path)),
        "edit": link(v2(path), title="grant or withdraw (PUT {purpose: true|false})"),
        ME: link(v2("/users/me")),
    }
    if out.history_next_cursor is not None:
        url = request.url.include_query_params(history_cursor=out.history_next_cursor)
        links["next"] = link(f"{url.path}?{url.query}", title="older changes")
    return resource(
        links,
        {
            "consents": [
                {
                    "purpose": c.purpose,
                    "description": c.description,
                    "granted": c.granted,
                    "updated_at": timestamp(c.updated_at),
                }
                for c in out.consents
            ],
            "history": [
                {
                    "purpose": r.purpose,
                    "granted": r.granted,
                    "recorded_at": timestamp(r.recorded_at),
                    "source": r.source,
                }
                for r in out.history
            ],
        },
    )


CONSENTS_EXAMPLE = {
    "_links": {
        "self": {"href": "/api/v2/users/me/consents"},
        "edit": {"href": "/api/v2/users/me/consents"},
        "sf:me": {"href": "/api/v2/users/me"},
        "curies": CURIES,
    },
    "consents": [
        {
            "purpose": "marketing_email",
            "description": "News and offers by email",
            "granted": True,
            "updated_at": "2026-12-07T05:15:05.123456Z",
        }
    ],
    "history": [
        {
            "purpose": "marketing_email",
            "granted": True,
            "recorded_at": "2026-12-07T05:15:05.123456Z",
            "source": "api",
        }
    ],
}


@router.get(
    "/users/me/consents",
    response_model=ConsentsV2,
    response_class=HALResponse,
    responses=problems(401, 400, example=CONSENTS_EXAMPLE),
    summary="Your consents per purpose and their changes (`next`: older changes)",
)
async def get_consents(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    media_type: Accepted,
    history_limit: HistoryLimit = HISTORY_PAGE,
    history_cursor: HistoryCursor = None,
) -> HALResponse:
    out = await _consents(ConsentService(session), principal.user_id, history_limit, history_cursor)
    return hal_response(consents_resource(request, out), media_type, headers=PERSONAL)


@router.put(
    "/users/me/consents",
    response_model=ConsentsV2,
    response_class=HALResponse,
    responses=problems(401, example=CONSENTS_EXAMPLE),
    summary="Grant or withdraw consents: `{purpose: true|false, ...}`; only changes are recorded",
)
@route_policy(rate="consents")
async def put_consents(
    request: Request,
    body: ConsentsIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    media_type: Accepted,
) -> HALResponse:
    service = ConsentService(session)
    await service.update(principal.user_id, body.root)
    out = await _consents(service, principal.user_id)
    return hal_response(consents_resource(request, out), media_type, headers=PERSONAL)


@router.delete(
    "/users/me",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={
        202: {"description": "The erasure is under way; every session is revoked"},
        **problems(401),
    },
    summary="Erase your account (recent sign-in; the target of `sf:erase`); orders stay, "
    "without personal data",
)
async def erase_me(
    principal: CurrentPrincipal, session: SessionDep, resources: ResourcesDep, client: Client
) -> Response:
    await ErasureService(session, resources).erase(principal, client)
    return Response(status_code=status.HTTP_202_ACCEPTED, headers=PERSONAL)
