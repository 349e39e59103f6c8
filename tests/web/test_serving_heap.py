"""`storefront serve`'s app freezes its start-up heap out of the garbage collector once it has
started (decision 0192): full collections under load walked hundreds of thousands of objects
that live as long as the process."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from storefront.web.serving import freeze_heap_after_startup


def test_what_start_up_made_is_frozen_once_the_lifespan_has_started() -> None:
    made: list[dict[str, Any]] = []
    frozen_when_started: list[int] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        made.extend({"n": n} for n in range(5000))  # what a start-up keeps for good
        yield

    app = freeze_heap_after_startup(FastAPI(lifespan=lifespan))

    @app.get("/count")
    async def count() -> dict[str, int]:
        frozen_when_started.append(gc.get_freeze_count())
        return {}

    gc.unfreeze()  # whatever the test harness froze before: counted from zero here
    try:
        assert gc.get_freeze_count() == 0
        with TestClient(app) as client:
            assert client.get("/count").status_code == 200
        assert len(made) == 5000
        assert frozen_when_started[0] >= 5000  # start-up's objects are out of the collector's way
    finally:
        gc.freeze()  # as the harness had it (everything alive stays frozen)
