"""Persisted queries (decision 0146): the operations in ``persisted/*.graphql`` are
registered by the SHA-256 of their text. A client may send only
``{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}}`` (Apollo's
automatic persisted queries format, without its registration step: only committed
operations are known), and with ``STOREFRONT_GRAPHQL__PERSISTED_ONLY`` a query whose text is
not registered is refused, so production can serve exactly the operations its clients
ship."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import GraphQLError

DIRECTORY = Path(__file__).parent / "persisted"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@cache
def registered() -> Mapping[str, str]:
    """Each registered operation's text by its hash."""
    texts = (path.read_text(encoding="utf-8") for path in sorted(DIRECTORY.glob("*.graphql")))
    return {sha256(text): text for text in texts}


def _requested_hash(extensions: Any) -> str | None:
    if not isinstance(extensions, dict):
        return None
    persisted = extensions.get("persistedQuery")
    if not isinstance(persisted, dict):
        return None
    value = persisted.get("sha256Hash")
    return value if isinstance(value, str) else None


class PersistedQueries(SchemaExtension):
    def __init__(self, *, persisted_only: bool) -> None:
        self.persisted_only = persisted_only

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        known = registered()
        wanted = _requested_hash(context.operation_extensions)
        if wanted is not None:
            text = known.get(wanted)
            if text is None:
                raise GraphQLError(
                    "No registered query has this hash.",
                    extensions={"code": "persisted-query-not-found"},
                )
            if context.query and context.query != text:
                raise GraphQLError(
                    "The query does not match its hash.",
                    extensions={"code": "persisted-query-mismatch"},
                )
            context.query = text
        elif self.persisted_only and sha256(context.query or "") not in known:
            raise GraphQLError(
                "Only registered queries are served here: send the hash of one.",
                extensions={"code": "persisted-query-required"},
            )
        yield
