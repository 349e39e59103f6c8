"""The docs page works offline (every asset same-origin) and the operational endpoints."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx2
import pytest
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from storefront.resources import Resources
from tests.conftest import make_settings
from tests.support.factories import V1
from tests.support.problems import assert_problem

UNREACHABLE_DB = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"
EXTERNAL_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


class AssetCollector(HTMLParser):
    """Every URL the page makes the browser fetch (script, stylesheet, icon, image...)."""

    ATTRIBUTES = {
        "script": "src",
        "link": "href",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "embed": "src",
        "object": "data",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = self.ATTRIBUTES.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append((tag, value))
        self._in_script = tag == "script" and not dict(attrs).get("src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)


async def get_docs(client: httpx2.AsyncClient) -> tuple[str, AssetCollector]:
    r = await client.get("/docs")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    collector = AssetCollector()
    collector.feed(r.text)
    return r.text, collector


# --- docs ---------------------------------------------------------------------------------


async def test_docs_page_references_only_same_origin_assets(client: httpx2.AsyncClient) -> None:
    html, page = await get_docs(client)

    tags = {tag for tag, _url in page.urls}
    assert {"script", "link"} <= tags, page.urls
    for tag, url in page.urls:
        assert not EXTERNAL_URL.match(url), f"<{tag}> loads {url} from another origin"
        assert url.startswith("/"), url
    assert "http://" not in html
    assert "https://" not in html
    assert "cdn" not in html.lower()


async def test_every_docs_asset_is_served_by_the_app(client: httpx2.AsyncClient) -> None:
    _html, page = await get_docs(client)
    expected_types = {
        ".js": "javascript",
        ".css": "text/css",
        ".png": "image/png",
        ".ico": "image/",
    }

    assert len(page.urls) >= 3, page.urls  # the bundle, its stylesheet, the icon
    for _tag, url in page.urls:
        r = await client.get(url)
        assert r.status_code == 200, url
        assert r.content, url
        suffix = url[url.rfind(".") :]
        assert expected_types[suffix] in r.headers["content-type"], (url, r.headers)


async def test_swagger_ui_bundle_is_the_real_thing(client: httpx2.AsyncClient) -> None:
    _html, page = await get_docs(client)
    [bundle] = [url for tag, url in page.urls if tag == "script"]
    r = await client.get(bundle)
    assert r.status_code == 200
    assert len(r.content) > 100_000
    assert b"SwaggerUIBundle" in r.content


async def test_docs_page_loads_the_schema_from_the_app(client: httpx2.AsyncClient) -> None:
    _html, page = await get_docs(client)
    script = "\n".join(page.inline_scripts)
    urls = re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", script)
    assert urls == ["/openapi.json"], script
    assert "window.location.origin" in script  # the OAuth2 redirect stays on this origin
    r = await client.get(urls[0])
    assert r.status_code == 200


async def test_docs_oauth2_redirect_page_is_self_contained(client: httpx2.AsyncClient) -> None:
    r = await client.get("/docs/oauth2-redirect")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = AssetCollector()
    page.feed(r.text)
    assert page.urls == []
    assert "http://" not in r.text
    assert "https://" not in r.text


async def test_missing_docs_asset_is_a_problem_404(client: httpx2.AsyncClient) -> None:
    r = await client.get("/static/docs/not-there.js")
    assert_problem(r, 404)


async def test_openapi_lists_the_api(client: httpx2.AsyncClient) -> None:
    r = await client.get("/openapi.json")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    schema = r.json()
    assert schema["info"]["title"] == "Storefront API"
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    expected = {
        f"{V1}/auth/register": {"post"},
        f"{V1}/auth/login": {"post"},
        f"{V1}/auth/token": {"post"},
        f"{V1}/users/me": {"get", "patch"},
        f"{V1}/shops": {"post"},
        f"{V1}/shops/{{shop_id}}": {"get"},
        f"{V1}/shops/{{shop_id}}/members/{{user_id}}": {"put", "delete"},
        "/livez": {"get"},
        "/readyz": {"get"},
        "/healthz": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, f"{path} missing from {sorted(paths)}"
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    assert "/docs" not in paths
    assert not any(p.startswith("/static") for p in paths)


async def test_openapi_describes_auth_for_the_authorize_button(
    client: httpx2.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    [oauth2] = [s for s in schemes.values() if s["type"] == "oauth2"]
    assert oauth2["flows"]["password"]["tokenUrl"] == f"{V1}/auth/token"
    token_body = schema["paths"][f"{V1}/auth/token"]["post"]["requestBody"]
    assert "application/x-www-form-urlencoded" in token_body["content"]
    me = schema["paths"][f"{V1}/users/me"]["get"]
    assert me.get("security"), me


async def test_openapi_never_exposes_password_hashes(client: httpx2.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    user_out = r.json()["components"]["schemas"]["UserOut"]
    assert set(user_out["properties"]) == {"id", "email", "display_name", "created_at"}
    assert "password_hash" not in r.text


# --- health -------------------------------------------------------------------------------


async def test_livez(client: httpx2.AsyncClient) -> None:
    r = await client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx2.AsyncClient) -> None:
    r = await client.get("/readyz")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    db = body["checks"]["db_primary"]
    assert db["status"] == "up"
    assert isinstance(db["latency_ms"], int | float)
    assert db["latency_ms"] >= 0
    assert all(check["status"] == "up" for check in body["checks"].values()), body


async def test_healthz_reports_each_component(client: httpx2.AsyncClient) -> None:
    r = await client.get("/healthz")

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["status"] == "ok"
    db = body["components"]["db_primary"]
    assert db["status"] == "up"
    assert isinstance(db["latency_ms"], int | float)
    assert db["latency_ms"] >= 0


async def test_readyz_is_503_while_shutting_down(
    client: httpx2.AsyncClient, resources: Resources
) -> None:
    resources.draining.begin()
    try:
        r = await client.get("/readyz")
        live = await client.get("/livez")
    finally:
        resources.draining.active = False  # the app is shared by the tests of this worker

    assert_problem(r, 503, slug="unavailable")
    assert int(r.headers["retry-after"]) > 0
    assert live.status_code == 200  # liveness is not readiness
    assert (await client.get("/readyz")).status_code == 200


@pytest.fixture
async def dead_db_client() -> AsyncIterator[httpx2.AsyncClient]:
    """An app whose primary database is unreachable (nothing listens on port 1)."""
    app = create_app(make_settings(UNREACHABLE_DB))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_readyz_is_503_problem_when_the_database_is_unreachable(
    dead_db_client: httpx2.AsyncClient,
) -> None:
    started = time.perf_counter()
    r = await dead_db_client.get("/readyz")
    elapsed = time.perf_counter() - started

    body = assert_problem(r, 503, slug="unavailable", instance="/readyz")
    assert "database" in body["detail"].lower()
    statuses = [check["status"] for check in body["checks"].values()]
    assert "down" in statuses, body
    assert elapsed < 5, elapsed  # bounded by the check timeout, not the pool's
    for leak in ("127.0.0.1", "nope", "postgres@", "asyncpg", "Traceback"):
        assert leak not in r.text, leak


async def test_healthz_reports_the_database_down(dead_db_client: httpx2.AsyncClient) -> None:
    r = await dead_db_client.get("/healthz")

    assert r.status_code == 503, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["status"] == "degraded"
    assert body["components"]["db_primary"]["status"] == "down"
    assert "127.0.0.1" not in r.text
    assert "nope" not in r.text


async def test_livez_does_not_depend_on_the_database(dead_db_client: httpx2.AsyncClient) -> None:
    r = await dead_db_client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_api_calls_fail_cleanly_when_the_database_is_unreachable(
    dead_db_client: httpx2.AsyncClient,
) -> None:
    r = await dead_db_client.post(
        f"{V1}/auth/login", json={"email": "a@example.com", "password": "whatever-pw"}
    )
    assert r.status_code in {500, 503}, r.text
    assert_problem(r, r.status_code)
    assert "127.0.0.1" not in r.text
    assert "Connection" not in r.text
