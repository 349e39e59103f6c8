"""uvicorn's h11 protocol with a deadline on every request head (slowloris).

uvicorn bounds the size of a request head (``h11_max_incomplete_event_size``, decision 0094)
but not the time it may take to arrive: a connection that sends nothing, or one header line
every few seconds, is held open for ever, and a few thousand of them exhaust the server's file
descriptors. Here each request head must be complete within
``STOREFRONT_PROTECTION__HEADER_TIMEOUT_SECONDS`` of the connection opening (or of the previous
response ending, on a kept-alive connection); otherwise the connection is closed. The body is
the deadline middleware's business, not this one's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from storefront.settings import get_settings


class HeadDeadlineH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = get_settings().protection.header_timeout_seconds
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no request yet: nothing to answer

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_deadline()  # the head is in (or the connection failed)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request's head, if one comes
        super().on_response_complete()
