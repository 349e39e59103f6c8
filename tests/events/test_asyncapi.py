"""The committed AsyncAPI document is the one the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from storefront.cli import app
from storefront.events import EventType
from storefront.events.asyncapi import asyncapi_document
from storefront.sales import CONSUMERS

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_asyncapi_document_is_what_the_code_generates() -> None:
    generated = asyncapi_document(CONSUMERS)
    assert DOCUMENT.read_text(encoding="utf-8") == generated, (
        "docs/asyncapi.json is stale: run `storefront events asyncapi --output docs/asyncapi.json`"
    )


def test_the_document_describes_every_event_and_consumer() -> None:
    document = json.loads(asyncapi_document(CONSUMERS))
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    for event_type in EventType:
        channel = channels[f"{event_type.value}:publish"]
        assert channel["address"] == event_type.value  # the routing key
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "topic"
    consumer = channels["storefront.events.sales-projection:consume"]
    assert consumer["bindings"]["amqp"]["queue"]["name"] == "storefront.events.sales-projection"
    cloudevent = document["components"]["schemas"]["CloudEvent"]
    assert set(cloudevent["required"]) >= {"id", "source", "type", "time", "subject", "data"}


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(app, ["events", "asyncapi", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == asyncapi_document(CONSUMERS)
