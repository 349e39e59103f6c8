"""Annotated dependency aliases shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from storefront.infra.replica import ReadRouter, format_lsn, parse_lsn, principal_key
from storefront.kit.client_address import client_address
from storefront.kit.db import ReadSession, WriteSession, after_commit, session_scope
from storefront.resources import Resources
from storefront.telemetry.logging import current_request

# read-your-writes (decision 0150): a response to a write carries the primary's WAL position
# after its commit; a client that sends it back never reads from a replica behind it
LSN_HEADER = "Storefront-LSN"


async def get_resources(request: Request) -> Resources:
    # async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a thread
    # hop per request for a dictionary lookup (found by profiling, docs/decisions/0058)
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep, request: Request) -> AsyncIterator[WriteSession]:
    holder = current_request()
    if holder is not None:  # for the audit entries this request may record
        holder["client_address"] = client_address(request.scope, resources.trusted_proxies)
    scope = session_scope(resources.sessionmaker)
    session = await anext(scope)
    if resources.reads.enabled:
        # the first after-commit action: the write's LSN is known (and the pin set) before
        # the others run (cache invalidation), so no fill can read from before the write
        reads = resources.reads
        after_commit(session, lambda: _remember_write(reads, request))
    try:
        yield WriteSession(session)
    except BaseException as exc:
        # hand the error to the scope at once (an ``async for`` would abandon it, and it
        # would roll back only when garbage-collected): it rolls back, runs the
        # after-rollback actions (failure audit entries) and raises the error again
        await scope.athrow(exc)
        raise
    await anext(scope, None)  # commit, then the after-commit actions


async def _remember_write(reads: ReadRouter, request: Request) -> None:
    lsn = await reads.write_lsn()
    if lsn is None:
        return
    holder = current_request()
    if holder is not None:  # the response carries it (web/observability.py)
        holder["write_lsn"] = format_lsn(lsn)
    key = principal_key(request.headers.get("authorization"))
    if key is not None:
        reads.pins.pin(key, lsn)


def read_after(request: Request, reads: ReadRouter) -> int:
    """The WAL position this request's reads must see: the one its client sent back, or its
    principal's last write in this process (whichever is newer)."""
    lsn = parse_lsn(request.headers.get(LSN_HEADER))
    key = principal_key(request.headers.get("authorization"))
    if key is not None:
        lsn = max(lsn, reads.pins.get(key))
    return lsn


# scope="function": the transaction commits *before* the response is sent, so nothing is
# acknowledged to a client that did not durably happen.
SessionDep = Annotated[WriteSession, Depends(get_session, scope="function")]


async def get_read_session(resources: ResourcesDep, request: Request) -> AsyncIterator[ReadSession]:
    """A session for a route that only reads and needs no transaction (kit/db.py
    ``read_session``: on PostgreSQL each statement is its only round trip): on the read
    replica when one is configured and has replayed this client's last write, else on the
    primary (infra/replica.py). Nothing it does is committed: a route that writes takes
    ``SessionDep``."""
    session = await resources.reads.session(min_lsn=read_after(request, resources.reads))
    async with session:
        yield session


ReadSessionDep = Annotated[ReadSession, Depends(get_read_session, scope="function")]
