"""Annotated dependency aliases shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.platform.db import session_scope
from storefront.platform.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a thread
    # hop per request for a dictionary lookup (found by profiling, docs/decisions/0058)
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(runtime.sessionmaker):
        yield session


# scope="function": the transaction commits *before* the response is sent, so nothing is
# acknowledged to a client that did not durably happen.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
