from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from storefront.identity.deps import CurrentPrincipal
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.responses import PROBLEM_RESPONSES, no_store
from storefront.webhooks.schemas import WebhookCreatedOut, WebhookIn, WebhookOut
from storefront.webhooks.service import WebhookService

router = APIRouter(tags=["webhooks"])


@router.post(
    "/shops/{shop_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreatedOut,
    responses=PROBLEM_RESPONSES,
    summary="Subscribe an HTTPS endpoint to order events (owner); the secret is shown once",
)
async def create_webhook(
    shop_id: uuid.UUID,
    body: WebhookIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> WebhookCreatedOut:
    endpoint, secret = await WebhookService(session, runtime).create(principal, shop_id, body)
    response.headers["Location"] = f"/api/v1/shops/{shop_id}/webhooks/{endpoint.id}"
    no_store(response)
    out = WebhookOut.model_validate(endpoint)
    return WebhookCreatedOut(**out.model_dump(), secret=secret)


@router.get(
    "/shops/{shop_id}/webhooks",
    response_model=list[WebhookOut],
    responses=PROBLEM_RESPONSES,
)
async def list_webhooks(
    shop_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> list[WebhookOut]:
    no_store(response)
    endpoints = await WebhookService(session, runtime).endpoints(principal, shop_id)
    return [WebhookOut.model_validate(endpoint) for endpoint in endpoints]


@router.delete(
    "/shops/{shop_id}/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def delete_webhook(
    shop_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> None:
    await WebhookService(session, runtime).delete(principal, shop_id, endpoint_id)
