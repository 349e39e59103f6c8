"""Annotated dependency aliases shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.platform.db import session_scope
from storefront.platform.http.client_address import client_address
from storefront.platform.observability.logging import current_request
from storefront.platform.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a thread
    # hop per request for a dictionary lookup (found by profiling, docs/decisions/0058)
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep, request: Request) -> AsyncIterator[AsyncSession]:
    holder = current_request()
    if holder is not None:  # for the audit entries this request may record
        holder["client_address"] = client_address(request.scope, runtime.trusted_proxies)
    scope = session_scope(runtime.sessionmaker)
    session = await anext(scope)
    try:
        yield session
    except BaseException as exc:
        # hand the error to the scope at once (an ``async for`` would abandon it, and it
        # would roll back only when garbage-collected): it rolls back, runs the
        # after-rollback actions (failure audit entries) and raises the error again
        await scope.athrow(exc)
        raise
    await anext(scope, None)  # commit, then the after-commit actions


# scope="function": the transaction commits *before* the response is sent, so nothing is
# acknowledged to a client that did not durably happen.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
