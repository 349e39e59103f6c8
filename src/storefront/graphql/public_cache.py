"""Anonymous catalog queries answered from the response cache (decision 0167).

A query from an anonymous caller whose every root field is public (``products``, ``product``,
``shop``) reads only public data: products and shops, whose types lead nowhere else (a test
walks the schema to keep it so). Its whole answer is then filed in the REST reads' response
cache under the tags REST's cached reads use for the same rows (``catalog:<shop>``,
``shop:<shop>``, ``product:<id>``), so every write that invalidates REST's listing or product
invalidates it too (generations: never stale once the write is acknowledged). A hit runs no
resolver and no SQL. Anything else (a signed-in caller, a mutation, a private field, an
answer with errors) runs as usual and is never filed.

The plan (which root fields, which arguments name the rows) is worked out once per document
text and kept in a bounded map, so a hit does not parse the document either.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    parse,
)
from storefront.catalog.service import catalog_tag, product_tag
from storefront.shops.service import shop_tag

# root field -> its arguments naming rows: the shop, and the product (or None)
PUBLIC_ROOTS: dict[str, tuple[str, str | None]] = {
    "products": ("shopId", None),
    "product": ("shopId", "id"),
    "shop": ("id", None),
}
# every object type reachable from those fields (tests/graphql/test_public_cache.py checks
# the schema against it): none holds anything private
PUBLIC_TYPES = frozenset({"Product", "ProductConnection", "ProductEdge", "PageInfo", "Shop"})
MAX_PLANS = 512
MAX_QUERY_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class _Root:
    name: str
    shop: ValueNode | None
    product: ValueNode | None


@dataclass(frozen=True, slots=True)
class Plan:
    """A cacheable document: its root fields, the operation's name, the text's digest."""

    roots: tuple[_Root, ...]
    operation: str | None
    digest: str


def _roots(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> list[FieldNode] | None:
    """The root fields (fragments expanded), None if any is not public (or a fragment is
    unknown or spread in a cycle: graphql refuses those, and an answer with errors is never
    filed)."""
    found: list[FieldNode] = []
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name == "__typename":
                continue
            if name not in PUBLIC_ROOTS:
                return None
            found.append(selection)
            continue
        if isinstance(selection, InlineFragmentNode):
            nested = _roots(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in seen:
                return None
            nested = _roots(fragment.selection_set, fragments, seen | {name})
        else:  # pragma: no cover - no other kind of selection
            return None
        if nested is None:
            return None
        found += nested
    return found


def _argument(field: FieldNode, name: str | None) -> ValueNode | None:
    if name is None:
        return None
    for argument in field.arguments or ():
        if argument.name.value == name:
            return argument.value
    return None


def plan_of(query: str) -> Plan | None:
    """How to cache ``query``'s answer, or None if it is not a public catalog query."""
    if len(query) > MAX_QUERY_CHARS:
        return None
    try:
        document = parse(query, max_tokens=2000)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        return None
    operation = operations[0]
    fields = _roots(operation.selection_set, fragments)
    if not fields:
        return None
    roots = []
    for field in fields:
        shop_arg, product_arg = PUBLIC_ROOTS[field.name.value]
        roots.append(
            _Root(field.name.value, _argument(field, shop_arg), _argument(field, product_arg))
        )
    return Plan(
        tuple(roots),
        operation.name.value if operation.name else None,
        hashlib.sha256(query.encode()).hexdigest(),
    )


def _uuid(value: ValueNode | None, variables: dict[str, Any]) -> uuid.UUID | None:
    if isinstance(value, VariableNode):
        raw = variables.get(value.name.value)
    elif isinstance(value, StringValueNode):
        raw = value.value
    else:
        return None
    if not isinstance(raw, str):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


class PublicQueryCache:
    """Plans by document text (bounded), and each request's key and tags."""

    def __init__(self) -> None:
        self._plans: OrderedDict[str, Plan | None] = OrderedDict()

    def plan(self, query: str) -> Plan | None:
        if query in self._plans:
            self._plans.move_to_end(query)
            return self._plans[query]
        found = plan_of(query)
        self._plans[query] = found
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return found

    def key_and_tags(
        self, query: str, variables: Any, operation_name: str | None
    ) -> tuple[str, list[str]] | None:
        """The cache key and tags of this request, or None if it cannot be cached."""
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            return None
        plan = self.plan(query)
        if plan is None or (operation_name not in (None, plan.operation)):
            return None
        tags: set[str] = set()
        for root in plan.roots:
            shop_id = _uuid(root.shop, variables)
            if shop_id is None:
                return None
            tags.add(shop_tag(shop_id))
            if root.name == "products":
                tags.add(catalog_tag(shop_id))
            elif root.name == "product":
                product_id = _uuid(root.product, variables)
                if product_id is None:
                    return None
                tags.add(product_tag(product_id))
        try:
            canonical = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
        return f"graphql:{plan.digest}:{digest}", sorted(tags)
