"""GraphiQL served by the app itself (decision 0166): the page references only same-origin
assets, each served with the integrity the page declares and as recorded in PROVENANCE.md,
under a Content-Security-Policy of 'self'; its schema (introspection) query passes the
document limits; and a headless Chromium with every other host unreachable renders the
editor (when Debian's chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from graphql import get_introspection_query
from storefront.graphql.ide import ASSETS, SCRIPTS, STYLES, integrity
from storefront.web.middleware import API_CSP, GRAPHIQL_CSP
from tests.conftest import IN_CI, migrated_sqlite
from tests.graphql.support import codes, gql
from tests.support.servers import cli_env, free_port, serve, stop, wait_ready

BROWSER = {"Accept": "text/html"}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str | None]] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.refs.append((values["src"] or "", values.get("integrity")))
            else:
                self.inline_scripts += 1
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.refs.append((values.get("href") or "", values.get("integrity")))
        elif tag == "link" and values.get("href") not in (None, "data:,"):
            self.refs.append((values.get("href") or "", None))
        elif tag == "style":
            self.inline_styles += 1
        if "style" in values:
            self.inline_styles += 1


async def test_the_page_references_only_same_origin_assets_all_served(
    client: httpx2.AsyncClient,
) -> None:
    page = await client.get("/graphql", headers=BROWSER)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == GRAPHIQL_CSP
    assert "script-src 'self';" in GRAPHIQL_CSP
    assert "unsafe" not in GRAPHIQL_CSP
    parsed = _Assets()
    parsed.feed(page.text)
    assert parsed.inline_scripts == 0
    assert parsed.inline_styles == 0
    assert len(parsed.refs) == len(SCRIPTS) + len(STYLES)
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]", page.text), "another origin"
    for ref, declared in parsed.refs:
        assert ref.startswith("/static/graphiql/"), ref
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
        assert declared == integrity(ref.removeprefix("/static/graphiql/"))
        kind = "text/css" if ref.endswith(".css") else "text/javascript"
        assert asset.headers["content-type"].startswith(kind), ref
        assert asset.content == (ASSETS / ref.removeprefix("/static/graphiql/")).read_bytes()


async def test_the_docs_page_links_to_graphiql(client: httpx2.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert '<a href="/graphql">' in page.text


async def test_json_answers_keep_the_api_policy(client: httpx2.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": "{ __typename }"})
    assert r.headers["content-security-policy"] == API_CSP


def test_vendored_files_are_those_recorded_in_the_provenance() -> None:
    """Each vendored file's sha384 is the one PROVENANCE.md records (the npm registry's
    tarball, the same bytes as the integrity strawberry's own page pins for that version)."""
    recorded = dict(
        re.findall(
            r"^\| `([^`]+)` \|.*\| `(sha384-[^`]+)` \|$",
            (ASSETS / "PROVENANCE.md").read_text(),
            re.M,
        )
    )
    vendored = sorted(p.name for p in (ASSETS / "vendor").iterdir())
    assert sorted(recorded) == vendored
    for name, digest in recorded.items():
        assert integrity(f"vendor/{name}") == digest, name


async def test_graphiqls_schema_query_passes_the_limits(client: httpx2.AsyncClient) -> None:
    """GraphiQL asks for the schema with the standard introspection query, whose `ofType`
    chain nests 9 deep: refused by the depth limit before, GraphiQL had no schema (no docs,
    no completion). A chain that long adds no depth; a longer one still counts."""
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = await gql(client, query)
    assert codes(body) == []
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    chain = "{ __schema { types { fields { type " + "{ ofType " * 20 + "{ name }" + " }" * 20
    chain += " } } } }"
    assert codes(await gql(client, chain)) == ["query-too-deep"]


async def test_no_page_where_introspection_is_off(app: FastAPI) -> None:
    from storefront.app import create_app

    settings = app.state.settings.model_copy(
        update={"graphql": app.state.settings.graphql.model_copy(update={"introspection": False})}
    )
    assert settings.graphql_introspection is False
    bare = create_app(settings)
    assert not [r for r in bare.routes if getattr(r, "path", "") == "/static/graphiql"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_headless_chromium_renders_the_editor_with_other_hosts_unreachable(
    tmp_path: Path,
) -> None:
    if CHROMIUM is None:
        # .ci/run installs Debian's chromium: in CI a missing browser fails, never skips
        if IN_CI:
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    env = cli_env(migrated_sqlite(tmp_path / "graphiql.db"))
    proc, base = serve(env, free_port())
    try:
        wait_ready(base, proc)
        assert CHROMIUM is not None
        dom = subprocess.run(  # noqa: S603 - a fixed local binary
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                # every name but loopback's fails to resolve: nothing outside can load
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"{base}/graphql",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        ).stdout
    finally:
        stop(proc)
    # React replaced "Loading..." with GraphiQL: its editors (CodeMirror) and the example
    assert "Loading..." not in dom
    assert "graphiql-editor" in dom, dom[:2000]
    assert "CodeMirror" in dom
    assert "FirstProducts" in dom
    # and the schema arrived: the docs explorer's root types come from introspection
    assert "query-too-deep" not in dom
