"""Single-flight: concurrent callers of one key share one computation (request coalescing).

The computation runs in its own task, so a caller that goes away (client disconnect) does
not cancel it for the others; its result or its exception goes to every caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}
        self.shared = 0  # callers that joined a flight already in the air

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``fn()``'s result, and whether this caller joined a flight already in the air."""
        task = self._flights.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(fn())
            self._flights[key] = task
            task.add_done_callback(lambda t: self._landed(key, t))
        else:
            self.shared += 1
        return await asyncio.shield(task), joined

    def _landed(self, key: str, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when all callers left
