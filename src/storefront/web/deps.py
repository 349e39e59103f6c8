"""Annotated dependency aliases shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.client_address import client_address
from storefront.kit.db import read_session, session_scope
from storefront.resources import Resources
from storefront.telemetry.logging import current_request


async def get_resources(request: Request) -> Resources:
    # async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a thread
    # hop per request for a dictionary lookup (found by profiling, docs/decisions/0058)
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep, request: Request) -> AsyncIterator[AsyncSession]:
    holder = current_request()
    if holder is not None:  # for the audit entries this request may record
        holder["client_address"] = client_address(request.scope, resources.trusted_proxies)
    scope = session_scope(resources.sessionmaker)
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


async def get_read_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session for a route that only reads and needs no transaction (kit/db.py
    ``read_session``: on PostgreSQL each statement is its only round trip). Nothing it
    does is committed: a route that writes takes ``SessionDep``."""
    async with read_session(resources.sessionmaker) as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
