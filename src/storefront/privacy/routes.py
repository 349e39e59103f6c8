from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from storefront.identity.deps import Client, CurrentPrincipal
from storefront.kit.db import utcnow
from storefront.kit.inputs import STORABLE
from storefront.privacy.consents import ConsentService
from storefront.privacy.models import DataExport, ExportStatus
from storefront.privacy.processing import CONSENT_PURPOSES
from storefront.privacy.schemas import (
    ConsentRecordOut,
    ConsentsIn,
    ConsentsOut,
    ConsentStateOut,
    ExportAccepted,
    ExportLinks,
    ExportOut,
)
from storefront.privacy.service import ErasureService, ExportService, effective_status
from storefront.settings import Settings
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.pagination import (
    MAX_CURSOR_LENGTH,
    MAX_PAGE_SIZE,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
)
from storefront.web.paths import API_PREFIX
from storefront.web.responses import NO_STORE, PROBLEM_RESPONSES, no_store
from storefront.web.route_policy import route_policy

router = APIRouter(tags=["privacy"])
EXPORTS = f"{API_PREFIX}/users/me/exports"
GONE_RESPONSES = {**PROBLEM_RESPONSES, 410: {**PROBLEM_RESPONSES[404], "description": "Expired"}}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _export_out(export: DataExport) -> ExportOut:
    current = effective_status(export, utcnow())
    link = f"{EXPORTS}/{export.id}"
    return ExportOut(
        id=export.id,
        status=current,
        requested_at=export.requested_at,
        completed_at=export.completed_at,
        expires_at=export.expires_at,
        size_bytes=export.size_bytes if current is ExportStatus.ready else None,
        links=ExportLinks(
            self=link, download=f"{link}/download" if current is ExportStatus.ready else None
        ),
    )


@router.post(
    "/users/me/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportAccepted,
    responses=PROBLEM_RESPONSES,
    summary="Request a copy of everything held about you (GDPR articles 15 and 20)",
)
@route_policy(rate="expensive")
async def request_export(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> ExportAccepted:
    export = await ExportService(session, resources, _settings(request)).request(principal.user_id)
    response.headers["Location"] = f"{EXPORTS}/{export.id}"
    no_store(response)
    return ExportAccepted(id=export.id, status=export.status)


@router.get(
    "/users/me/exports/{export_id}",
    response_model=ExportOut,
    responses=PROBLEM_RESPONSES,
    summary="An export's status; `links.download` once it is ready",
)
async def get_export(
    export_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> ExportOut:
    export = await ExportService(session, resources, _settings(request)).get(
        principal.user_id, export_id
    )
    no_store(response)
    return _export_out(export)


@router.get(
    "/users/me/exports/{export_id}/download",
    responses={
        **GONE_RESPONSES,
        200: {"description": "The archive (JSON)", "content": {"application/json": {}}},
    },
    response_class=Response,
    summary="Download a ready export (410 once it has expired)",
)
async def download_export(
    export_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    body = await ExportService(session, resources, _settings(request)).download(
        principal.user_id, export_id
    )
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="storefront-export-{export_id}.json"',
            "Cache-Control": NO_STORE,
        },
    )


HISTORY_PAGE = 50  # changes per page of a consent history, by default (decision 0128)
HistoryLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description="Changes per page of the history")
]
HistoryCursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="`history_next_cursor` of the previous page: older changes",
    ),
    STORABLE,
]


async def _consents(
    service: ConsentService,
    user_id: uuid.UUID,
    limit: int = HISTORY_PAGE,
    cursor: str | None = None,
) -> ConsentsOut:
    before = None
    if cursor is not None:
        before = await service.records.get(user_id, decode_cursor(cursor) or uuid.UUID(int=0))
        if before is None:
            raise InvalidCursor("The cursor is malformed; use history_next_cursor as returned.")
    history, more = await service.records.page(user_id, limit, before)
    return ConsentsOut(
        consents=[
            ConsentStateOut(
                purpose=s.purpose,
                description=CONSENT_PURPOSES[s.purpose],
                granted=s.granted,
                updated_at=s.updated_at,
            )
            for s in await service.latest(user_id)
        ],
        history=[
            ConsentRecordOut(
                purpose=r.purpose, granted=r.granted, recorded_at=r.recorded_at, source=r.source
            )
            for r in history
        ],
        history_next_cursor=encode_cursor(history[0].id) if more and history else None,
    )


@router.get(
    "/users/me/consents",
    response_model=ConsentsOut,
    responses=PROBLEM_RESPONSES,
    summary="Your consents per purpose, with their changes (newest first by page)",
)
async def get_consents(
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    history_limit: HistoryLimit = HISTORY_PAGE,
    history_cursor: HistoryCursor = None,
) -> ConsentsOut:
    no_store(response)
    return await _consents(
        ConsentService(session), principal.user_id, history_limit, history_cursor
    )


@router.put(
    "/users/me/consents",
    response_model=ConsentsOut,
    responses=PROBLEM_RESPONSES,
    summary="Grant or withdraw consents: `{purpose: true|false, ...}`; only changes are recorded",
)
# each change adds a consent record and an audit entry (decision 0128)
@route_policy(rate="consents")
async def put_consents(
    body: ConsentsIn, principal: CurrentPrincipal, session: SessionDep, response: Response
) -> ConsentsOut:
    service = ConsentService(session)
    await service.update(principal.user_id, body.root)
    no_store(response)
    return await _consents(service, principal.user_id)


@router.delete(
    "/users/me",
    status_code=status.HTTP_202_ACCEPTED,
    responses=PROBLEM_RESPONSES,
    summary="Erase your account (needs a recent sign-in); orders stay without personal data",
)
async def erase_me(
    principal: CurrentPrincipal, session: SessionDep, resources: ResourcesDep, client: Client
) -> Response:
    await ErasureService(session, resources).erase(principal, client)
    return Response(status_code=status.HTTP_202_ACCEPTED, headers={"Cache-Control": NO_STORE})
