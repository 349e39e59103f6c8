"""GraphQL errors as the REST problems are: a domain error becomes a GraphQL error whose
``extensions.code`` is its RFC 9457 slug (``not-found``, ``forbidden``,
``precondition-failed`` ...), input that fails the domain's schemas ``validation-error``,
and anything unexpected ``internal-error`` with no detail (logged and sent to Sentry, never
a stack trace to the client)."""

from __future__ import annotations

import logging
from typing import Any

from graphql.error import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors

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
