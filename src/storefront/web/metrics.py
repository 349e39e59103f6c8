"""/metrics on the API port: the scrape-token check and the endpoint (decision 0092)."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from storefront.telemetry.metrics import render
from storefront.web.problems import problem_response


def presents_scrape_token(request: Request, token: SecretStr | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <the scrape token>``."""
    if token is None:
        return False
    scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), expected)


def _refusal(request: Request) -> Response | None:
    """/metrics on the API port (decision 0092): with a scrape token configured, only for a
    request that presents it; else not at all while the metrics have a port of their own
    (production's default), so the business figures are never on the public port."""
    settings = getattr(request.app.state, "settings", None)
    if settings is None:
        return None
    token = settings.observability.metrics_token
    if token is not None:
        if presents_scrape_token(request, token):
            return None
        return problem_response(
            request,
            401,
            detail="Metrics need the scrape token (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
        )
    if settings.api_metrics_port > 0:
        return problem_response(request, 404, detail=f"No resource at {request.url.path}")
    return None


async def metrics_endpoint(request: Request) -> Response:
    refused = _refusal(request)
    if refused is not None:
        return refused
    body, content_type = render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
