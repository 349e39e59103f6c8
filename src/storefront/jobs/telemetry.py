"""Background jobs: trace context carried from the enqueuing request into the job, a span per
run, and the job metrics (duration by outcome, failures).

A taskiq middleware: ``pre_send`` (client side) writes the W3C ``traceparent`` into the
message labels; ``pre_execute`` (worker side) opens a CONSUMER span that continues that trace;
``post_execute`` records the run and closes the span. Registered by the job queue.

A job deferred into the outbox is sent later, maybe by another process: the outbox row keeps
the request's carrier (:func:`current_carrier`), and the relay sends it inside
:func:`carried_context`, so ``pre_send`` writes the request's trace, not the relay's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

from storefront.telemetry import metrics
from storefront.telemetry.logging import clear_request_context

_CARRIER_KEYS = ("traceparent", "tracestate")


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty when there is none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: carrier[k] for k in _CARRIER_KEYS if k in carrier}


@contextmanager
def carried_context(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make ``carrier``'s trace context current (for sending a job deferred earlier)."""
    token = context.attach(propagate.extract(dict(carrier or {})))
    try:
        yield
    finally:
        context.detach(token)


class JobTelemetryMiddleware(TaskiqMiddleware):
    def __init__(self) -> None:
        super().__init__()
        self._running: dict[str, tuple[trace.Span, object, float]] = {}
        # the app's provider once the resources is instrumented (the global one until then)
        self.tracer_provider: trace.TracerProvider | None = None

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        message.labels.update(current_carrier())
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        # a job run in-process starts as a task of the request that deferred it, and would
        # log that request's id: its lines are the job's (the trace links them instead)
        clear_request_context()
        carrier = {k: str(message.labels[k]) for k in _CARRIER_KEYS if k in message.labels}
        parent = propagate.extract(carrier)
        tracer = trace.get_tracer("storefront.jobs", tracer_provider=self.tracer_provider)
        span = tracer.start_span(
            f"job {message.task_name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.operation.type": "process", "job.name": message.task_name},
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        self._running[message.task_id] = (span, token, time.perf_counter())
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        running = self._running.pop(message.task_id, None)
        if running is None:
            return
        span, token, started = running
        failed = bool(result.is_err)
        outcome = "failure" if failed else "success"
        metrics.JOB_DURATION.labels(job=message.task_name, outcome=outcome).observe(
            time.perf_counter() - started
        )
        if failed:
            metrics.record_job_failure(message.task_name)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        context.detach(token)  # type: ignore[arg-type]
