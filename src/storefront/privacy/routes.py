from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from storefront.identity.deps import Client, CurrentPrincipal
from storefront.platform.db import utcnow
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.responses import NO_STORE, PROBLEM_RESPONSES, no_store
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

router = APIRouter(tags=["privacy"])
EXPORTS = "/api/v1/users/me/exports"
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
async def request_export(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> ExportAccepted:
    export = await ExportService(session, runtime, _settings(request)).request(principal.user_id)
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
    runtime: RuntimeDep,
    response: Response,
) -> ExportOut:
    export = await ExportService(session, runtime, _settings(request)).get(
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
    runtime: RuntimeDep,
) -> Response:
    body = await ExportService(session, runtime, _settings(request)).download(
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


async def _consents(service: ConsentService, user_id: uuid.UUID) -> ConsentsOut:
    history = await service.history(user_id)
    return ConsentsOut(
        consents=[
            ConsentStateOut(
                purpose=s.purpose,
                description=CONSENT_PURPOSES[s.purpose],
                granted=s.granted,
                updated_at=s.updated_at,
            )
            for s in ConsentService.current(history)
        ],
        history=[
            ConsentRecordOut(
                purpose=r.purpose, granted=r.granted, recorded_at=r.recorded_at, source=r.source
            )
            for r in history
        ],
    )


@router.get(
    "/users/me/consents",
    response_model=ConsentsOut,
    responses=PROBLEM_RESPONSES,
    summary="Your consents per purpose, with every change",
)
async def get_consents(
    principal: CurrentPrincipal, session: SessionDep, response: Response
) -> ConsentsOut:
    no_store(response)
    return await _consents(ConsentService(session), principal.user_id)


@router.put(
    "/users/me/consents",
    response_model=ConsentsOut,
    responses=PROBLEM_RESPONSES,
    summary="Grant or withdraw consents: `{purpose: true|false, ...}`; only changes are recorded",
)
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
    principal: CurrentPrincipal, session: SessionDep, runtime: RuntimeDep, client: Client
) -> Response:
    await ErasureService(session, runtime).erase(principal, client)
    return Response(status_code=status.HTTP_202_ACCEPTED, headers={"Cache-Control": NO_STORE})
