"""The SDL is the GraphQL contract: src/storefront/graphql/schema.graphql must be what the
code serves (regenerate it with ``python -m storefront.graphql.schema``), and a change to it
must not break clients (decision 0147): removing or retyping a field, an argument, a type or
an enum value fails here against the committed contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from graphql import (
    BreakingChange,
    build_schema,
    find_breaking_changes,
    get_named_type,
    is_leaf_type,
)
from storefront.graphql.limits import CONNECTION_FIELDS, PAGE_ARGUMENTS, PAGED_FIELDS
from storefront.graphql.schema import build_schema as build_storefront_schema
from storefront.graphql.schema import sdl

ROOT = Path(__file__).resolve().parents[2]
SDL_PATH = ROOT / "src/storefront/graphql/schema.graphql"
REGENERATE = "python -m storefront.graphql.schema > src/storefront/graphql/schema.graphql"


def breaking(old_sdl: str, new_sdl: str) -> list[BreakingChange]:
    return find_breaking_changes(build_schema(old_sdl), build_schema(new_sdl))


def test_the_committed_sdl_is_what_the_code_serves() -> None:
    committed = SDL_PATH.read_text()
    served = sdl()
    # a breaking difference is named first: it needs a deprecation period, not a regenerate
    changes = breaking(committed, served)
    assert not changes, "breaking changes against the committed SDL: " + "; ".join(
        c.description for c in changes
    )
    assert served == committed, f"the schema changed: regenerate the SDL ({REGENERATE})"


def _committed_at_head() -> str | None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [git, "show", "HEAD:src/storefront/graphql/schema.graphql"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def test_the_sdl_does_not_break_the_last_committed_one() -> None:
    """Working tree against the last commit: a regenerated SDL that breaks clients fails
    before it is committed."""
    head = _committed_at_head()
    if head is None:
        pytest.skip("not a git checkout, or the SDL is not committed yet")
    changes = breaking(head, SDL_PATH.read_text())
    assert not changes, "; ".join(c.description for c in changes)


def test_the_check_sees_a_breaking_change() -> None:
    committed = SDL_PATH.read_text()
    described = '  """The product\'s sku when bought."""\n  sku: String!\n'
    without_field = committed.replace(described, "", 1)
    assert without_field != committed
    changes = breaking(committed, without_field)
    assert [c.description for c in changes] == ["Field OrderLine.sku was removed."]
    # adding a field is not breaking
    added = committed.replace(described, described + "  barcode: String\n", 1)
    assert breaking(committed, added) == []


def test_every_connection_field_is_priced_by_its_page_size() -> None:
    """The cost limit multiplies a connection's children by its page size: every field that
    takes `first` must be known to it."""
    schema = build_storefront_schema()._schema
    with_first = {
        name
        for type_ in schema.type_map.values()
        for name, field in getattr(type_, "fields", {}).items()
        if "first" in getattr(field, "args", {})
    }
    assert with_first == set(CONNECTION_FIELDS)


def test_every_paged_field_is_priced_by_its_page_size() -> None:
    """Any page-size argument, not only `first` (viewer.consents' historyFirst): every field
    taking one is priced by it, and by its default page when it is left out."""
    schema = build_storefront_schema()._schema
    paged = {
        name
        for type_ in schema.type_map.values()
        for name, field in getattr(type_, "fields", {}).items()
        if PAGE_ARGUMENTS & set(getattr(field, "args", {}))
    }
    assert paged == set(PAGED_FIELDS)
    # the cost is read from the document by field name: no other field with a selection
    # (a leaf costs 1 whatever its page) may share one
    unpaged = {
        name
        for type_ in schema.type_map.values()
        for name, field in getattr(type_, "fields", {}).items()
        if not PAGE_ARGUMENTS & set(getattr(field, "args", {}))
        and not is_leaf_type(get_named_type(field.type))
    }
    assert unpaged & paged == set()


def test_every_type_and_field_is_described() -> None:
    """The schema documents itself (GraphiQL's docs pane, the committed SDL): every type,
    field and input field has a description; only the root operation types and the UUID
    scalar are left to their names."""
    from graphql import GraphQLInputObjectType, GraphQLObjectType

    schema = build_storefront_schema()._schema
    exempt = {"Query", "Mutation", "Subscription", "UUID", "String", "Int", "Boolean", "ID"}
    missing = [
        name
        for name, type_ in schema.type_map.items()
        if not name.startswith("__") and name not in exempt and not type_.description
    ]
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or not isinstance(
            type_, GraphQLObjectType | GraphQLInputObjectType
        ):
            continue
        missing += [f"{name}.{f}" for f, field in type_.fields.items() if not field.description]
    assert missing == []
