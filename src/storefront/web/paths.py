"""Paths the HTTP edge knows by name: the API's prefix, and the few paths that are not routes
of a domain. Everything else a middleware needs to know about a path is declared on its route
(see ``route_policy``)."""

from __future__ import annotations

# every domain's REST routes are mounted under it (app.py); links and the OAuth2 token URL
# are built from it
API_PREFIX = "/api/v1"

# never rate limited (prefixes): liveness (a refused liveness probe restarts a healthy
# process), the docs page, its static files and the OpenAPI document
NOT_RATE_LIMITED = ("/livez", "/docs", "/static/", "/openapi.json")

# API version 2 (HAL, decision 0142): the same services under their v1 paths, after this prefix
API_V2_PREFIX = "/api/v2"
