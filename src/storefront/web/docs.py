"""The docs page, served entirely by the app (no CDN: it works offline)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

STATIC_PREFIX = "/static/docs"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI, *, graphiql_url: str | None = None) -> None:
    """``/docs`` (Swagger UI from the app's own assets); ``graphiql_url``: a link to the
    GraphQL IDE above it, where the app serves one."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": False},
        )
        if graphiql_url is None:
            return page
        link = f'<p><a href="{graphiql_url}">GraphQL: the same API in GraphiQL</a></p>'
        body = bytes(page.body).replace(
            b'<div id="swagger-ui">', link.encode() + b'\n<div id="swagger-ui">', 1
        )
        return HTMLResponse(body)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
