"""Each GraphQL operation observed (decision 0146): a span named by its operation, a
duration histogram and a counter by operation, type and outcome. Operation names are labels
only when the operation is registered (persisted/): any other name is ``other``, so a client
cannot grow the metrics' cardinality by inventing names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache

from prometheus_client import Counter, Histogram
from strawberry.extensions import SchemaExtension

from graphql import OperationDefinitionNode, parse
from storefront.graphql.persisted import registered
from storefront.telemetry.metrics import LATENCY_BUCKETS
from storefront.telemetry.tracing import get_tracer

OPERATIONS = Counter(
    "storefront_graphql_operations",
    "GraphQL operations by operation name (registered ones; others: other), type and outcome.",
    ["operation", "type", "outcome"],
)
OPERATION_DURATION = Histogram(
    "storefront_graphql_operation_duration_seconds",
    "GraphQL operation duration (subscriptions: their set-up), by operation name and type.",
    ["operation", "type"],
    buckets=LATENCY_BUCKETS,
)
_tracer = get_tracer("storefront.graphql")


@cache
def known_names() -> frozenset[str]:
    names: set[str] = set()
    for text in registered().values():
        for definition in parse(text).definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name:
                names.add(definition.name.value)
    return frozenset(names)


def label(name: str | None) -> str:
    return name if name in known_names() else "other"


class OperationTelemetry(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        started = time.perf_counter()
        requested = context.operation_name
        with _tracer.start_as_current_span(f"graphql {requested or 'anonymous'}") as span:
            yield
            name = context.operation_name or requested
            span.update_name(f"graphql {name or 'anonymous'}")
            try:
                kind = context.operation_type.value
            except RuntimeError:  # the document did not parse
                kind = "unknown"
            result = context.result
            failed = bool(context.pre_execution_errors) or bool(getattr(result, "errors", None))
            span.set_attribute("graphql.operation.name", name or "")
            span.set_attribute("graphql.operation.type", kind)
            operation = label(name)
            OPERATIONS.labels(
                operation=operation, type=kind, outcome="error" if failed else "ok"
            ).inc()
            OPERATION_DURATION.labels(operation=operation, type=kind).observe(
                time.perf_counter() - started
            )
