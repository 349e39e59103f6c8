"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs, Sentry.

The registry, the HTTP, database, cache and job metrics and their exposition live in
``metrics``; each domain defines its business KPIs in its own ``metrics`` module on the same
registry (for example ``orders.metrics.record_order_placed``). Code binds the signed-in user
with ``logging.bind_user``; telemetry never imports a domain. See docs/operations.md for what
each signal means.
"""
