"""GraphiQL served by the app itself: the page at ``/graphql`` (a browser's GET) and its
scripts and styles under ``/static/graphiql``, vendored from the npm registry with their
licences and provenance (``graphiql/PROVENANCE.md``, decision 0166). Nothing is loaded from
another origin, so it works offline and under a Content-Security-Policy of ``'self'``."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from storefront.web.middleware import GRAPHIQL_PREFIX

STATIC_PREFIX = GRAPHIQL_PREFIX
ASSETS = Path(__file__).parent / "graphiql"

# in load order: React before GraphiQL before the explorer plugin, which uses both
STYLES = ("vendor/graphiql.min.css", "vendor/plugin-explorer.css", "graphiql.css")
SCRIPTS = (
    "vendor/react.production.min.js",
    "vendor/react-dom.production.min.js",
    "vendor/graphiql.min.js",
    "vendor/plugin-explorer.umd.js",
    "graphiql.js",
)


def integrity(name: str) -> str:
    """The file's Subresource Integrity value (sha384), as the page declares it."""
    digest = hashlib.sha384((ASSETS / name).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode("ascii")


@cache
def graphiql_html() -> str:
    """The page; every asset same-origin, each with its integrity."""
    links = "\n".join(
        f'    <link rel="stylesheet" href="{STATIC_PREFIX}/{name}" integrity="{integrity(name)}">'
        for name in STYLES
    )
    scripts = "\n".join(
        f'    <script src="{STATIC_PREFIX}/{name}" integrity="{integrity(name)}"></script>'
        for name in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>{escape("Storefront GraphiQL")}</title>
    <link rel="icon" href="data:,">
{links}
  </head>
  <body>
    <div id="graphiql" class="graphiql-container">Loading...</div>
{scripts}
  </body>
</html>
"""


def install_graphiql(app: FastAPI) -> None:
    """Serve GraphiQL's assets (the page itself is the GraphQL router's)."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=ASSETS), name="graphiql-assets")
