from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES, no_store
from storefront.webhooks.auth import WebhookManager
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
    body: WebhookIn,
    manager: WebhookManager,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> WebhookCreatedOut:
    shop_id = manager.shop_id
    service = WebhookService(session, resources)
    endpoint, secret = await service.create(manager.principal, shop_id, body)
    response.headers["Location"] = f"{API_PREFIX}/shops/{shop_id}/webhooks/{endpoint.id}"
    no_store(response)
    out = WebhookOut.model_validate(endpoint)
    return WebhookCreatedOut(**out.model_dump(), secret=secret)


@router.get(
    "/shops/{shop_id}/webhooks",
    response_model=list[WebhookOut],
    responses=PROBLEM_RESPONSES,
)
async def list_webhooks(
    manager: WebhookManager,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> list[WebhookOut]:
    no_store(response)
    service = WebhookService(session, resources)
    endpoints = await service.endpoints(manager.principal, manager.shop_id)
    return [WebhookOut.model_validate(endpoint) for endpoint in endpoints]


@router.delete(
    "/shops/{shop_id}/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def delete_webhook(
    endpoint_id: uuid.UUID,
    manager: WebhookManager,
    session: SessionDep,
    resources: ResourcesDep,
) -> None:
    service = WebhookService(session, resources)
    await service.delete(manager.principal, manager.shop_id, endpoint_id)
