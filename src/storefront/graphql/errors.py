"""GraphQL errors as the REST problems are: a domain error becomes a GraphQL error whose
``extensions.code`` is its RFC 9457 slug (``not-found``, ``forbidden``,
``precondition-failed`` ...), input that fails the domain's schemas ``validation-error``,
a dependency that is away ``unavailable`` (as REST's 503), and anything unexpected
``internal-error`` with no detail (logged and sent to Sentry, never
a stack trace to the client)."""

from __future__ import annotations

import logging
from typing import Any

from graphql.error import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors

from storefront.infra.availability import (
    MISSING_SCHEMA,
    busy_reason,
    dependency,
    unavailable_reason,
)
from storefront.infra.discovery import RETRY_AFTER_SECONDS
from storefront.kit.errors import DomainError
from storefront.telemetry import sentry

logger = logging.getLogger("storefront.errors")


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # never echo the submitted input back (as REST's 422)
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg")), "type": err.get("type")}
        for err in exc.errors()
    ]


def _extensions(error: GraphQLError, operation: str | None) -> tuple[str, dict[str, Any]]:
    original = error.original_error
    if isinstance(original, DomainError):
        return original.detail, {"code": original.slug, "status": original.status, **original.extra}
    if isinstance(original, ValidationError):
        errors = _validation_errors(original)
        return f"{len(errors)} field(s) failed validation", {
            "code": "validation-error",
            "status": 422,
            "errors": errors,
        }
    if original is None or isinstance(original, GraphQLError):
        # the document itself: syntax, unknown fields, wrong argument types, a limit
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", "bad-request")
        return error.message, extensions
    if isinstance(original, ValueError) and error.path is None:
        # a scalar's parser refusing a variable's value (Money, DateTime)
        return error.message, {"code": "bad-request"}
    unavailable = _unavailable(original)
    if unavailable is not None:
        return unavailable
    logger.error(
        "unhandled error in GraphQL operation %s at %s",
        operation or "(anonymous)",
        error.path,
        exc_info=original,
    )
    if sentry.enabled():
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("graphql.operation", operation or "anonymous")
            scope.set_transaction_name(f"graphql {operation or 'anonymous'}")
            sentry_sdk.capture_exception(original)
    return "The server failed to handle this request; it has been logged.", {
        "code": "internal-error",
        "status": 500,
    }


def _unavailable(original: BaseException) -> tuple[str, dict[str, Any]] | None:
    """A dependency that is away (the database unreachable, out of pooled connections or
    not migrated; Redis down) is REST's 503 ``unavailable`` with a retry delay, not an
    internal error: no traceback, logged once per change of state (decision 0110). A
    missing table or column counts only while this process already knows the database is
    not ready (its readiness monitor checks the schema revision): against a migrated
    database it is a bug, logged as one. A statement the database gave up on (statement
    timeout, lock wait) is ``unavailable`` too, without marking the database away."""
    if busy_reason(original) is not None:
        return "The database could not finish this request in time; retry later.", {
            "code": "unavailable",
            "status": 503,
            "retry_after": RETRY_AFTER_SECONDS,
        }
    found = unavailable_reason(original)
    if found is None:
        return None
    name, reason = found
    status = dependency(name)
    if reason.startswith(MISSING_SCHEMA):
        if status.is_up:
            return None
    else:
        status.down(reason)
    return f"A service this request needs ({name}) is unavailable; retry later.", {
        "code": "unavailable",
        "status": 503,
        "retry_after": RETRY_AFTER_SECONDS,
    }


class ProblemErrors(MaskErrors):
    """Every error of a result rewritten with its code (MaskErrors' hook, which also covers
    subscriptions' results)."""

    def __init__(self) -> None:
        super().__init__()

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        message, extensions = _extensions(error, self.execution_context.operation_name)
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions=extensions,
        )
