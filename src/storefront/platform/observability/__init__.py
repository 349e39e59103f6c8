"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs, Sentry.

Domains record business events through the small functions in ``metrics`` (for example
``metrics.record_order_placed``) and bind the signed-in user with ``logging.bind_user``;
platform code never imports a domain. See docs/operations.md for what each signal means.
"""
