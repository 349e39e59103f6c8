"""RFC 9457 problem details: every error the API returns is shaped here, in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount

from storefront.infra.availability import (
    MISSING_SCHEMA,
    RETRY_AFTER_SECONDS,
    busy_reason,
    dependency,
    unavailable_reason,
)
from storefront.kit.errors import DomainError
from storefront.resources import Resources
from storefront.telemetry.sentry import report_exception
from storefront.telemetry.tracing import current_trace_id
from storefront.web.middleware import security_headers

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"
logger = logging.getLogger("storefront.errors")

_SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
    504: "timeout",
}


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


def problem_response(
    request: Request | None,
    status: int,
    *,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug or _SLUGS.get(status, "error")),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description or HTTPStatus(status).phrase,
        "instance": request.url.path if request is not None else None,
    }
    if request is not None:
        request_id = request.scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
        # the trace this request belongs to: quote it to find the trace and logs
        trace_id = request.scope.get("state", {}).get("trace_id") or current_trace_id()
        if trace_id:
            body["trace_id"] = trace_id
    if extra:
        body.update(extra)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    exc = cast(DomainError, exc)
    return problem_response(
        request,
        exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers or None,
        extra=exc.extra or None,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    exc = cast(StarletteHTTPException, exc)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}"
    headers = exc.headers
    if status == 405:
        detail = f"{request.method} is not allowed here"
        # Starlette's Allow names only the first route that matched the path; RFC 9110
        # wants every method the resource supports (e.g. GET and PATCH on /users/me).
        allowed = _allowed_methods(request, (headers or {}).get("Allow", ""))
        if allowed:
            headers = {**(headers or {}), "Allow": allowed}
    return problem_response(request, status, detail=detail, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request, reported: str) -> str:
    """Every method some route (mounts aside: they take any method) accepts for this path."""
    allowed = {m.strip() for m in reported.split(",") if m.strip()}
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    for method in _METHODS:
        probe = {
            "type": "http",
            "method": method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "headers": [],
        }
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.add(method)
    return ", ".join(sorted(allowed))


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        # never echo the submitted input back: it may hold a password
        errors.append(
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg")), "type": err.get("type")}
        )
    return errors


async def _validation_error(request: Request, exc: Exception) -> Response:
    exc = cast(RequestValidationError, exc)
    errors = _clean_errors(exc)
    return problem_response(
        request,
        422,
        title="Request validation failed",
        detail=f"{len(errors)} field(s) failed validation",
        extra={"errors": errors},
    )


async def _schema_is_current(request: Request) -> bool:
    """The database is at the revision this code expects: then a missing table or column is
    a bug in the code (a 500 with its traceback), not an unmigrated database (a 503)."""
    resources: Resources | None = getattr(request.app.state, "resources", None)
    if resources is None or resources.expected_schema_revision is None:
        return False
    expected = resources.expected_schema_revision
    try:
        with anyio.fail_after(2):
            async with resources.engine.connect() as conn:
                current = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
    except Exception:  # noqa: BLE001 - cannot tell: treat as the dependency being away
        return False
    return bool(current == expected)


async def _unavailable(
    request: Request, exc: BaseException, headers: dict[str, str] | None = None
) -> Response | None:
    """503 with Retry-After when ``exc`` means a dependency is away (the database unreachable,
    not migrated or out of pooled connections; Redis down): not a bug, so no traceback; the
    log says it once per change of state (infra/availability.py). A statement the database
    gave up on (statement_timeout, a lock wait: contention on a hot row) is 503 too, logged
    as a warning and without marking the database away. None otherwise."""
    busy = busy_reason(exc)
    if busy is not None:
        logger.warning("database busy on %s %s: %s", request.method, request.url.path, busy)
        return problem_response(
            request,
            503,
            detail="The database could not finish this request in time; retry later.",
            headers={**(headers or {}), "Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    found = unavailable_reason(exc)
    if found is None:
        return None
    name, reason = found
    if reason.startswith(MISSING_SCHEMA) and await _schema_is_current(request):
        return None  # migrated to head and still missing: the code is wrong
    dependency(name).down(reason)
    return problem_response(
        request,
        503,
        detail=f"A service this request needs ({name}) is unavailable; retry later.",
        headers={**(headers or {}), "Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _dependency_error(request: Request, exc: Exception) -> Response:
    """Database, Redis and connection errors raised by a route: 503 when a dependency is
    away; anything else is a bug and goes on to the 500 handler (re-raised)."""
    response = await _unavailable(request, exc)
    if response is None:
        raise exc
    return response


async def _unhandled(request: Request, exc: Exception) -> Response:
    unavailable = await _unavailable(request, exc, _outer_headers(request))
    if unavailable is not None:  # raised by a middleware, outside the route's handlers
        return unavailable
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    report_exception(request, exc)  # to Sentry, when a DSN is configured
    return problem_response(
        request,
        500,
        detail="The server failed to handle this request; it has been logged.",
        headers=_outer_headers(request),
    )


def _outer_headers(request: Request) -> dict[str, str]:
    # Starlette runs the 500 handler in ServerErrorMiddleware, outside every user middleware,
    # so add the request id and the security headers those middlewares would have added.
    headers = security_headers(request.url.path)
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # a dependency that is away answers 503 + Retry-After, wherever it is noticed
    for dependency_error in (SQLAlchemyError, RedisError, OSError):
        app.add_exception_handler(dependency_error, _dependency_error)
    app.add_exception_handler(Exception, _unhandled)
