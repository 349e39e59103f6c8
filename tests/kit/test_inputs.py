"""Every string a route reads from a request is the shared ``Text`` type, and every integer
or boolean in a request body is strict (kit/inputs.py, decisions 0095 and 0099).

The walk covers each route's path, query, header, cookie and body parameters, its
dependencies' parameters, and every field of every body model, nested models included: a
new field or parameter declared as a plain ``str`` (the NUL that answered 500 on
PostgreSQL) or a lax ``int`` (``true`` read as 1) fails here, naming the route and field.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, EmailStr, Strict, StringConstraints, ValidationError

from storefront.app import create_app
from storefront.kit.inputs import STORABLE, Text, storable
from tests.conftest import make_settings

PARAM_KINDS = ("path_params", "query_params", "header_params", "cookie_params", "body_params")


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


def _params(dependant: Any) -> Iterator[tuple[str, Any]]:
    for kind in PARAM_KINDS:
        for field in getattr(dependant, kind):
            yield kind, field
    for sub in dependant.dependencies:
        yield from _params(sub)


def _strict(metadata: list[Any]) -> bool:
    return any(isinstance(m, Strict) and m.strict for m in metadata)


def _defects(tp: Any, metadata: list[Any], where: str, *, body: bool, seen: set[Any]) -> list[str]:
    """What is wrong with a value of type ``tp`` (with its annotation ``metadata``)."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *more = get_args(tp)
        # an inner Annotated's metadata applies before what was written around it
        return _defects(base, [*more, *metadata], where, body=body, seen=seen)
    if origin in (Union, types.UnionType):
        return [
            d
            for arg in get_args(tp)
            if arg is not type(None)
            for d in _defects(arg, metadata, where, body=body, seen=seen)
        ]
    if origin is not None:  # list[...], dict[...], tuple[...]: keys and items alike
        return [d for arg in get_args(tp) for d in _defects(arg, [], where, body=body, seen=seen)]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return []  # a closed set of values
    if tp is str or tp is EmailStr:
        if STORABLE not in metadata:
            return [f"{where}: a plain str, not Text"]
        after = metadata[len(metadata) - metadata[::-1].index(STORABLE) :]
        if any(type(m).__name__ != "Doc" for m in after):
            return [f"{where}: constraints after STORABLE (put it last)"]
        return []
    if tp in (int, bool):
        if body and not _strict(metadata):
            return [f"{where}: a lax {tp.__name__} in a body (use StrictInt/StrictBool)"]
        return []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return []
        seen.add(tp)
        return [
            d
            for name, info in tp.model_fields.items()
            for d in _defects(
                info.annotation, list(info.metadata), f"{where}.{name}", body=body, seen=seen
            )
        ]
    return []


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(make_settings("sqlite+aiosqlite:///:memory:"))


def test_every_request_string_is_text_and_every_body_number_strict(app: FastAPI) -> None:
    defects: list[str] = []
    checked = 0
    for route in _api_routes(app.router.routes):
        for kind, field in _params(route.dependant):
            checked += 1
            where = f"{sorted(route.methods or ())[0]} {route.path} {kind[:-7]} {field.name}"
            defects += _defects(
                field.field_info.annotation,
                list(field.field_info.metadata),
                where,
                body=kind == "body_params",
                seen=set(),
            )
    assert checked > 50  # the walk found the routes
    assert defects == [], "\n".join(defects)


def test_the_walk_notices_a_plain_str_and_a_lax_int() -> None:
    class Loose(BaseModel):
        name: str
        tags: list[Annotated[str, STORABLE]]
        quantity: int
        early: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1)]
        late: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), STORABLE]

    found = _defects(Loose, [], "body", body=True, seen=set())
    assert found == [
        "body.name: a plain str, not Text",
        "body.quantity: a lax int in a body (use StrictInt/StrictBool)",
        "body.early: constraints after STORABLE (put it last)",
    ]
    # the order matters: the early form checks min_length before stripping
    blank = {"name": "n", "tags": [], "quantity": 1, "early": "   ", "late": "x"}
    assert Loose.model_validate(blank).early == ""
    with pytest.raises(ValidationError, match="at least 1 character"):
        Loose.model_validate(blank | {"early": "x", "late": "   "})


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "lone \ud800", "\udfff end"])
def test_unstorable_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"NUL|surrogate"):
        storable(text)


@pytest.mark.parametrize("text", ["", "plain", "naïve ☕ 𝄞", "tab\tnew\nline", "\x7f\x1b", None])
def test_storable_text_passes_unchanged(text: str | None) -> None:
    assert storable(text) is text
