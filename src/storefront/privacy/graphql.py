"""The caller's privacy rights in the GraphQL schema, through the services REST's routes
call: their data exports (request one, follow it; the archive itself is downloaded from
the REST link given), their consents (read with their history, change them) and erasing
their account. Requesting an export spends REST's "expensive" budget, changing consents its
"consents" budget (decision 0183)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from storefront.identity.graphql import client_of
from storefront.kit.errors import UnprocessableEntity
from storefront.privacy.consents import ConsentService
from storefront.privacy.routes import HISTORY_PAGE, _consents, _export_out
from storefront.privacy.schemas import ConsentsIn, ConsentsOut, ExportOut
from storefront.privacy.service import ErasureService, ExportService
from storefront.web.graphql import GraphQLContext
from storefront.web.pagination import MAX_PAGE_SIZE


@strawberry.enum(description="Where a data export stands.")
class ExportStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


@strawberry.type(description="A copy of everything held about the caller (GDPR art. 15, 20).")
class DataExport:
    id: strawberry.ID = strawberry.field(description="The export's id.")
    status: ExportStatus = strawberry.field(description="Where it stands.")
    requested_at: datetime = strawberry.field(description="When it was requested.")
    completed_at: datetime | None = strawberry.field(description="When it was built (or failed).")
    expires_at: datetime = strawberry.field(description="When the archive is deleted.")
    size_bytes: int | None = strawberry.field(description="The archive's size, once ready.")
    download_url: str | None = strawberry.field(
        description="Once ready: the REST path to GET the archive (JSON) with the same "
        "Bearer token; null before and after."
    )

    @classmethod
    def of(cls, out: ExportOut) -> DataExport:
        return cls(
            id=strawberry.ID(str(out.id)),
            status=ExportStatus(out.status.value),
            requested_at=out.requested_at,
            completed_at=out.completed_at,
            expires_at=out.expires_at,
            size_bytes=out.size_bytes,
            download_url=out.links.download,
        )


@strawberry.type(description="The caller's current choice for one purpose.")
class ConsentState:
    purpose: str = strawberry.field(description="The purpose (marketing_email, product_analytics).")
    description: str = strawberry.field(description="What the purpose covers.")
    granted: bool = strawberry.field(description="The caller's choice (false until granted).")
    updated_at: datetime | None = strawberry.field(description="Null: never chosen.")


@strawberry.type(description="One change of a consent, as recorded.")
class ConsentRecord:
    purpose: str = strawberry.field(description="The purpose.")
    granted: bool = strawberry.field(description="Granted (true) or withdrawn (false).")
    recorded_at: datetime = strawberry.field(description="When.")
    source: str = strawberry.field(description="Where the change came from.")


@strawberry.type(description="The caller's consents and a page of their history.")
class Consents:
    purposes: list[ConsentState] = strawberry.field(
        description="The caller's choice for each documented purpose."
    )
    history: list[ConsentRecord] = strawberry.field(description="A page of the changes.")
    history_next_cursor: str | None = strawberry.field(
        description="Pass as historyAfter for older changes; null on the last page."
    )

    @classmethod
    def of(cls, out: ConsentsOut) -> Consents:
        return cls(
            purposes=[
                ConsentState(
                    purpose=s.purpose,
                    description=s.description,
                    granted=s.granted,
                    updated_at=s.updated_at,
                )
                for s in out.consents
            ],
            history=[
                ConsentRecord(
                    purpose=r.purpose, granted=r.granted, recorded_at=r.recorded_at, source=r.source
                )
                for r in out.history
            ],
            history_next_cursor=out.history_next_cursor,
        )


@strawberry.input(description="Grant (true) or withdraw (false) one purpose.")
class ConsentInput:
    purpose: str = strawberry.field(
        description="A documented purpose (marketing_email, product_analytics)."
    )
    granted: bool = strawberry.field(description="True to grant, false to withdraw.")


@strawberry.type(description="The caller's exports and consents (part of Viewer).")
class ViewerPrivacy:
    id: strawberry.ID = strawberry.field(description="The caller's user id.")

    @strawberry.field(
        description="One of the caller's data exports (as GET /users/me/exports/{id}); "
        "someone else's: not-found."
    )
    async def data_export(
        self, info: strawberry.Info[GraphQLContext, None], id: uuid.UUID
    ) -> DataExport:
        context = info.context
        principal = context.require_principal()
        async with context.reading() as session:
            service = ExportService(session, context.resources, context.resources.settings)
            export = await service.get(principal.user_id, id)
            return DataExport.of(_export_out(export))

    @strawberry.field(
        description="The caller's consents per purpose, with their changes newest first "
        "(as GET /users/me/consents)."
    )
    async def consents(
        self,
        info: strawberry.Info[GraphQLContext, None],
        history_first: Annotated[
            int | None, strawberry.argument(description="Changes per page, 1..100, default 50.")
        ] = None,
        history_after: str | None = None,
    ) -> Consents:
        context = info.context
        principal = context.require_principal()
        limit = HISTORY_PAGE if history_first is None else history_first
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise UnprocessableEntity(f"historyFirst must be between 1 and {MAX_PAGE_SIZE}.")
        async with context.reading() as session:
            out = await _consents(ConsentService(session), principal.user_id, limit, history_after)
        return Consents.of(out)


@strawberry.type(description="An export accepted: follow it with viewer.dataExport(id).")
class DataExportRequested:
    id: strawberry.ID = strawberry.field(description="The export's id.")
    status: ExportStatus = strawberry.field(description="Where it stands (queued).")


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        description="Request a copy of everything held about the caller (as POST "
        "/users/me/exports, from the same `expensive` rate-limit budget); it is built in the "
        "background."
    )
    async def request_data_export(
        self, info: strawberry.Info[GraphQLContext, None]
    ) -> DataExportRequested:
        context = info.context
        await context.spend("expensive")  # first, as REST's middleware spends it
        principal = context.require_principal()
        async with context.writing() as session:
            service = ExportService(session, context.resources, context.resources.settings)
            export = await service.request(principal.user_id)
            return DataExportRequested(
                id=strawberry.ID(str(export.id)), status=ExportStatus(export.status.value)
            )

    @strawberry.mutation(
        description="Grant or withdraw consents; only changes are recorded (as PUT "
        "/users/me/consents, from the same `consents` rate-limit budget)."
    )
    async def set_consents(
        self, info: strawberry.Info[GraphQLContext, None], consents: list[ConsentInput]
    ) -> Consents:
        context = info.context
        await context.spend("consents")
        principal = context.require_principal()
        if len({c.purpose for c in consents}) != len(consents):
            raise UnprocessableEntity("Name each purpose at most once.")
        body = ConsentsIn.model_validate({c.purpose: c.granted for c in consents})
        async with context.writing() as session:
            service = ConsentService(session)
            await service.update(principal.user_id, body.root)
            out = await _consents(service, principal.user_id)
        return Consents.of(out)

    @strawberry.mutation(
        description="Erase the caller's account (needs a recent sign-in, as DELETE "
        "/users/me): their personal data is destroyed, their orders kept without it, every "
        "session ends. True once accepted."
    )
    async def erase_account(self, info: strawberry.Info[GraphQLContext, None]) -> bool:
        context = info.context
        principal = context.require_principal()
        async with context.writing() as session:
            await ErasureService(session, context.resources).erase(principal, client_of(context))
        return True
