"""API v2's OpenAPI document: every operation has a summary, an example of its answer when
it has a body, an example problem for each error it documents, 413 and 415 where it takes a
body, and the OpenAPI links the stateful contract test follows resolve to real operations
(decisions 0142 and 0206)."""

from __future__ import annotations

from typing import Any

from tests.support.factories import Api


async def test_every_v2_operation_is_documented_with_examples(api: Api) -> None:
    document: dict[str, Any] = (await api.client.get("/openapi.json")).json()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        if path.startswith("/api/v2")
        for method, operation in item.items()
    }
    ids = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
    }
    assert len(operations) >= 40
    for (method, path), operation in operations.items():
        where = f"{method} {path}"
        assert operation.get("summary"), where
        responses = operation["responses"]
        for status, response in responses.items():
            content = response.get("content", {})
            if status.startswith(("4", "5")):
                assert content["application/problem+json"]["example"]["status"] == int(status), (
                    where,
                    status,
                )
            elif content:
                examples = [media.get("example") for media in content.values()]
                assert any(examples), (where, status)
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids, (where, link)
        if "requestBody" in operation:
            assert {"413", "415", "422"} <= responses.keys(), where
        else:
            assert "413" not in responses or "bulk" in path, where
    # the chain the stateful run follows: shop -> product -> order -> pay / cancel
    placed = operations[("POST", "/api/v2/shops/{shop_id}/orders")]["responses"]["201"]
    assert {"pay", "cancel", "self"} <= placed["links"].keys()
    assert placed["links"]["pay"]["x-request-body"] == {"payment_method": "pm_card_visa"}
