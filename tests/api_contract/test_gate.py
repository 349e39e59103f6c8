"""The compatibility gate fails a breaking change of v1 and passes an additive one (Optic's
breaking-changes rules, run offline), and splits the application's document by version
(decision 0144). Needs the gate's tool (`make api-contract` installs it; CI runs that first):
without it the diff tests skip, or fail under CI."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.api_contract import gate
from tests.conftest import require_or_skip

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return gate.full_document()


@pytest.fixture(scope="module")
def shops_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A part of v1 (its shop and catalog operations): the tool reads it in seconds."""
    return gate.split(document, "/api/v1/shops")


def _needs_tool() -> None:
    require_or_skip(
        None if gate.OPTIC.exists() else f"{gate.OPTIC} missing (run `make api-contract`)"
    )


def is_breaking(base: dict[str, Any], revision: dict[str, Any]) -> tuple[bool, str]:
    return gate.breaking(gate.render(base), gate.render(revision))


def test_each_version_has_its_own_operations(document: dict[str, Any]) -> None:
    v1, v2 = gate.split(document, "/api/v1/"), gate.split(document, "/api/v2/")
    assert v1["paths"]
    assert v2["paths"]
    assert all(p.startswith("/api/v1/") for p in v1["paths"])
    assert all(p.startswith("/api/v2/") for p in v2["paths"])
    # every reference resolves within its own document
    for part in (v1, v2):
        for ref in gate._refs(part):
            _, _, kind, name = ref.split("/", 3)
            assert name in part["components"][kind], ref
    # v2 speaks HAL
    shop = v2["paths"]["/api/v2/shops/{shop_id}"]["get"]["responses"]["200"]["content"]
    assert list(shop) == ["application/hal+json"]


def test_breaking_v1_fails_the_gate(shops_v1: dict[str, Any]) -> None:
    """Two breaks at once (one diff: the tool takes seconds a run): a response field
    removed, an optional parameter made required; the report names both."""
    _needs_tool()
    broken = copy.deepcopy(shops_v1)
    del broken["components"]["schemas"]["ShopOut"]["properties"]["slug"]
    listing = broken["paths"]["/api/v1/shops/{shop_id}/products"]["get"]
    (limit,) = [p for p in listing["parameters"] if p["name"] == "limit"]
    limit["required"] = True
    failed, report = is_breaking(shops_v1, broken)
    assert failed, report
    assert "cannot remove response property 'slug'" in report
    assert "cannot make optional query parameter 'limit' required" in report


def test_an_additive_change_passes(shops_v1: dict[str, Any]) -> None:
    _needs_tool()
    grown = copy.deepcopy(shops_v1)
    grown["components"]["schemas"]["ShopOut"]["properties"]["motto"] = {"type": "string"}
    failed, report = is_breaking(shops_v1, grown)
    assert not failed, report


def test_the_committed_documents_are_valid_json() -> None:
    for name in gate.VERSIONS:
        text = (gate.DOCS / f"{name}.json").read_text()
        assert json.loads(text)["paths"]
        assert text.endswith("\n")
