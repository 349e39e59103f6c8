"""The route template of a request: the only path-like label any signal may carry.

A raw path would let a scan of random URLs create a new time series per URL; a template
(``/api/v1/shops/{shop_id}``) is bounded by the code. It is known once routing chose a route,
so it is read after the app answered: from FastAPI's request telemetry (which knows the
prefixes of included routers), else from the Starlette route. A request answered before
routing (a rate-limit refusal, a shed request) or matching no route is ``<unmatched>``.
"""

from __future__ import annotations

from starlette.types import Scope

UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    telemetry = scope.get("fastapi.telemetry")
    route = getattr(telemetry, "route", None)
    if isinstance(route, str) and route:
        return route
    selected = scope.get("route")
    path = getattr(selected, "path_format", None) or getattr(selected, "path", None)
    if isinstance(path, str) and path and not scope.get("fastapi", {}).get("included_router"):
        return path
    if isinstance(path, str) and path and scope.get("path") == path:
        return path  # a route without parameters under an include without prefix
    return UNMATCHED
