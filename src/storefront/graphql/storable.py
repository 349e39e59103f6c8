"""Every string a GraphQL request carries is text the database can store (decision 0095, at
the GraphQL edge).

REST refuses NUL and lone surrogates through one type (``kit.inputs.STORABLE``) on every
parameter and body field. GraphQL arguments are read by strawberry, not by those types, so
``products(q: "a\\u0000b")`` reached PostgreSQL and failed there (an internal error, logged
with its traceback). One check for the whole operation instead of one per argument: every
string in the variables (values and keys, at any depth) and every string literal of the
document, before anything runs, with the same rule and message as REST
(``validation-error``, 422, naming where the string is; never echoing it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql.language import DocumentNode
from strawberry.extensions import SchemaExtension

from graphql import GraphQLError, StringValueNode, Visitor, visit
from storefront.kit.inputs import storable


def _variable_errors(value: Any, loc: list[str | int]) -> Iterator[dict[str, Any]]:
    if isinstance(value, str):
        try:
            storable(value)
        except ValueError as exc:
            yield {"loc": loc, "msg": f"Value error, {exc}", "type": "value_error"}
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _variable_errors(key, [*loc, "(key)"])
            yield from _variable_errors(item, [*loc, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _variable_errors(item, [*loc, index])


class _Literals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[dict[str, Any]] = []

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        try:
            storable(node.value)
        except ValueError as exc:
            where: list[str | int] = ["document"]
            if node.loc is not None:
                location = node.loc.source.get_location(node.loc.start)
                where += [location.line, location.column]
            self.errors.append({"loc": where, "msg": f"Value error, {exc}", "type": "value_error"})


def unstorable_strings(document: DocumentNode | None, variables: Any) -> list[dict[str, Any]]:
    """Where the request holds a string the database cannot store (empty: nowhere)."""
    errors = list(_variable_errors(variables or {}, ["variables"]))
    if document is not None:
        literals = _Literals()
        visit(document, literals)
        errors += literals.errors
    return errors


class StorableStrings(SchemaExtension):
    """Refuses an operation holding NUL or a lone surrogate anywhere, after the document
    is validated and before it is charged or run."""

    def on_validate(self) -> Iterator[None]:
        yield
        context = self.execution_context
        if context.pre_execution_errors:
            return
        errors = unstorable_strings(context.graphql_document, context.variables)
        if errors:
            raise GraphQLError(
                f"{len(errors)} field(s) failed validation",
                extensions={"code": "validation-error", "status": 422, "errors": errors},
            )
