"""Bounds on what one GraphQL document may ask (decision 0146): its size, depth, aliases,
tokens, and a cost computed before execution from the fields and the page sizes they ask
for. Each refusal is a GraphQL error with ``extensions.code`` saying which bound."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from storefront.infra.ratelimit import parse_policy
from storefront.kit.client_address import client_address
from storefront.privacy.routes import HISTORY_PAGE
from storefront.web.graphql import GraphQLContext
from storefront.web.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


def _page_size(field: FieldNode) -> int:
    """How many items a field asks for: its ``first`` (or another page-size argument, see
    PAGE_ARGUMENTS; a variable counts as the largest page), 1 for a field without one."""
    for argument in field.arguments or ():
        if argument.name.value in PAGE_ARGUMENTS:
            if isinstance(argument.value, IntValueNode):
                return max(1, int(argument.value.value))
            return MAX_PAGE_SIZE
    return 1


class _Cost:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments

    def of(self, selections: SelectionSetNode | None, seen: frozenset[str]) -> int:
        """The cost of a selection set asked once: 1 per field, a field's children times
        its page size. A fragment cycle is not followed (graphql's own rule reports it)."""
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += 1 + _page_size_or_default(selection) * self.of(
                    selection.selection_set, seen
                )
            elif isinstance(selection, InlineFragmentNode):
                total += self.of(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    total += self.of(fragment.selection_set, seen | {name})
        return total


def _page_size_or_default(field: FieldNode) -> int:
    # paged fields without their page-size argument serve their default page
    default = PAGED_FIELDS.get(field.name.value)
    if default is not None and not any(
        a.name.value in PAGE_ARGUMENTS for a in field.arguments or ()
    ):
        return default
    return _page_size(field)


# the arguments that say how many items a field serves: a connection's `first`, and
# `historyFirst` of viewer.consents (its history page: the whole field is priced by it)
PAGE_ARGUMENTS = frozenset({"first", "historyFirst"})
# the schema's fields that take `first` (checked against the schema by a test)
CONNECTION_FIELDS = frozenset({"products", "orders", "memberships", "shopAuditEvents"})
# every paged field and the page it serves when not told (checked by the same test)
PAGED_FIELDS: dict[str, int] = {
    **dict.fromkeys(CONNECTION_FIELDS, DEFAULT_PAGE_SIZE),
    "consents": HISTORY_PAGE,
}


def cost_of(document_definitions: Any) -> dict[str, int]:
    """Each operation's cost in a parsed document (by operation name, "" if anonymous)."""
    fragments = {
        d.name.value: d for d in document_definitions if isinstance(d, FragmentDefinitionNode)
    }
    cost = _Cost(fragments)
    return {
        (d.name.value if d.name else ""): cost.of(d.selection_set, frozenset())
        for d in document_definitions
        if isinstance(d, OperationDefinitionNode)
    }


# introspection spells a type's wrappers (non-null, list) as a chain of `ofType` fields:
# GraphiQL's schema query nests them 8 deep. A chain up to this long adds no depth, so the
# depth limit bounds the selections that fan out, not how a type is spelled; past it,
# every `ofType` counts again.
MAX_FREE_WRAPPING = 10


def _depth_and_aliases(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str],
    wrapping: int = 0,
) -> tuple[int, int]:
    """The nesting depth of a selection set and the aliases in it (fragments expanded, a
    cycle not followed; ``wrapping``: the run of `ofType` fields it is nested in)."""
    if selections is None:
        return 0, 0
    depth = aliases = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            run = wrapping + 1 if selection.name.value == "ofType" else 0
            child_depth, child_aliases = _depth_and_aliases(
                selection.selection_set, fragments, seen, run
            )
            level = 0 if 0 < run <= MAX_FREE_WRAPPING else 1
            depth = max(depth, level + child_depth)
            aliases += child_aliases + (selection.alias is not None)
        elif isinstance(selection, InlineFragmentNode):
            child_depth, child_aliases = _depth_and_aliases(
                selection.selection_set, fragments, seen, wrapping
            )
            depth, aliases = max(depth, child_depth), aliases + child_aliases
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                child_depth, child_aliases = _depth_and_aliases(
                    fragment.selection_set, fragments, seen | {name}, wrapping
                )
                depth, aliases = max(depth, child_depth), aliases + child_aliases
    return depth, aliases


def document_limits_rule(
    *, max_depth: int, max_aliases: int, max_cost: int
) -> type[ASTValidationRule]:
    """A validation rule refusing, before anything runs, an operation nested deeper than
    ``max_depth``, with more than ``max_aliases`` aliases, or costing more than
    ``max_cost``."""

    class DocumentLimits(ASTValidationRule):
        def enter_document(self, node: Any, *_args: Any) -> None:
            definitions = node.definitions
            fragments = {
                d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)
            }
            costs = cost_of(definitions)
            for operation in definitions:
                if not isinstance(operation, OperationDefinitionNode):
                    continue
                name = operation.name.value if operation.name else ""
                label = name or "(anonymous)"
                depth, aliases = _depth_and_aliases(operation.selection_set, fragments, frozenset())
                if depth > max_depth:
                    self._refuse(
                        f"Operation {label} is nested {depth} levels deep, more than {max_depth}.",
                        "query-too-deep",
                        depth=depth,
                        max_depth=max_depth,
                    )
                if aliases > max_aliases:
                    self._refuse(
                        f"Operation {label} has {aliases} aliases, more than {max_aliases}.",
                        "too-many-aliases",
                        aliases=aliases,
                        max_aliases=max_aliases,
                    )
                cost = costs[name]
                if cost > max_cost:
                    self._refuse(
                        f"Operation {label} would cost {cost}, more than the limit of "
                        f"{max_cost}: ask for smaller pages or fewer fields.",
                        "query-too-complex",
                        cost=cost,
                        max_cost=max_cost,
                    )

        def _refuse(self, message: str, code: str, **extensions: int) -> None:
            self.report_error(GraphQLError(message, extensions={"code": code, **extensions}))

    return DocumentLimits


class QuerySizeLimit(SchemaExtension):
    """Refuses a document longer than ``max_chars`` before it is parsed."""

    def __init__(self, *, max_chars: int) -> None:
        self.max_chars = max_chars

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query or ""
        if len(query) > self.max_chars:
            raise GraphQLError(
                f"The query is longer than {self.max_chars} characters.",
                extensions={"code": "query-too-large", "max_chars": self.max_chars},
            )
        yield


class CostCharge(SchemaExtension):
    """A GraphQL request spends the caller's rate-limit budget by its cost, not as one call:
    the middleware charged one call already; an operation costing more than
    ``cost_per_call`` spends one more per ``cost_per_call`` (rounded up), before it runs, on
    the same budget (the user's, else the client address's). Refused: ``too-many-requests``
    with ``retry_after``."""

    def __init__(self, *, cost_per_call: int, user_rate: str, anonymous_rate: str) -> None:
        self.cost_per_call = cost_per_call
        self.user = parse_policy("user", user_rate)
        self.anonymous = parse_policy("anonymous", anonymous_rate)

    async def on_validate(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors or document is None:
            return
        costs = cost_of(document.definitions)
        name = context.operation_name or ""
        cost = costs.get(name, max(costs.values(), default=0))
        extra = math.ceil(cost / self.cost_per_call) - 1
        app_context = context.context
        if extra <= 0 or not isinstance(app_context, GraphQLContext):
            return
        resources = app_context.resources
        if not resources.settings.rate_limit_enabled:
            return
        if app_context.principal is not None:
            limits, key = self.user, f"user:{app_context.principal.user_id}"
        else:
            request = app_context.request
            if request is None:  # pragma: no cover - every operation comes over a connection
                return
            address = client_address(request.scope, resources.trusted_proxies)
            limits, key = self.anonymous, f"addr:{address}"
        outcomes = await resources.rate_limiter.hit(limits, key, cost=extra)
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            retry_after = max(o.reset_seconds for o in refused)
            raise GraphQLError(
                f"This operation costs {cost} ({extra + 1} calls): the rate limit is spent; "
                f"retry in {retry_after} s.",
                extensions={"code": "too-many-requests", "status": 429, "retry_after": retry_after},
            )
