"""Every route the README and the operator docs name (`GET /auth/sessions`, `PUT ...`) exists,
with that method, in the served OpenAPI document: the prose cannot promise an endpoint the API
does not have (tests/docs/test_readme_examples.py runs the examples themselves)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2

from tests.support.paths import V1

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METHOD = r"(?:GET|HEAD|POST|PUT|PATCH|DELETE)"
# `GET /x`, `GET/PUT /x`, `` `DELETE /api/v1/users/me` ``; a path ends at a space, backtick,
# query string or punctuation
MENTION = re.compile(rf"\b({METHOD}(?:/{METHOD})*)\s+`?(/[\w./{{}}-]*[\w}}])")
# served outside the OpenAPI document on purpose
NOT_IN_SCHEMA = {"/metrics", "/docs", "/openapi.json"}


def mentions(text: str) -> list[tuple[str, str]]:
    """(method, path) for every route named in ``text``."""
    found = []
    for match in MENTION.finditer(text):
        path = match.group(2).removesuffix(".")
        found += [(method, path) for method in match.group(1).split("/")]
    return found


def template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_mentions_are_read_as_a_reader_reads_them() -> None:
    text = (
        "see `GET/DELETE /auth/sessions`; `POST /api/v1/users/me/exports`, then poll "
        "(GET /users/me/exports/{id}). Metrics: GET /metrics. GET and PUT are verbs."
    )
    assert mentions(text) == [
        ("GET", "/auth/sessions"),
        ("DELETE", "/auth/sessions"),
        ("POST", "/api/v1/users/me/exports"),
        ("GET", "/users/me/exports/{id}"),
        ("GET", "/metrics"),
    ]


async def test_every_documented_route_exists_with_its_method(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    served = {
        template(path): {method.upper() for method in operations}
        for path, operations in paths.items()
    }
    missing = []
    for document in DOCUMENTS:
        for method, path in mentions(document.read_text(encoding="utf-8")):
            if path in NOT_IN_SCHEMA:
                continue
            # the docs often leave out the /api/v1 prefix (`POST /auth/refresh`)
            candidates = [template(path), template(V1 + path)]
            if not any(method in served.get(candidate, set()) for candidate in candidates):
                missing.append(f"{document.relative_to(ROOT)}: {method} {path}")
    assert not missing, "documented but not served:\n" + "\n".join(missing)
