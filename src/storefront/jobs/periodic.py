"""A task one process runs every N seconds (retention, order expiry), started and stopped by
the lifespan of the API process or by the worker.

The first run comes one interval after the start; a failed run is logged (a dependency that
is away only once, by its status: infra/availability.py) and the next one tries again; at
shutdown a run still going gets ten seconds, then it is cancelled and its transaction rolls
back. Every job run this way must be idempotent: several processes may run it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from storefront.infra.availability import report_failure, spawn

logger = logging.getLogger("storefront.periodic")

STOP_GRACE_SECONDS = 10


class PeriodicTask:
    def __init__(
        self, name: str, interval_seconds: float, run: Callable[[], Awaitable[None]]
    ) -> None:
        self.name = name
        self.interval = interval_seconds
        self._run = run
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop (nothing when the interval is 0: switched off)."""
        if self.interval > 0 and self._task is None:
            self._task = spawn(self._loop(), name=f"storefront-{self.name.replace(' ', '-')}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(task, timeout=STOP_GRACE_SECONDS)
            except TimeoutError:  # a run still going: its transaction rolls back
                logger.warning("%s run cancelled at shutdown", self.name)

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            else:
                return
            try:
                await self._run()
            except Exception as exc:
                if not report_failure(exc):  # the database away is logged once, by its status
                    logger.exception("%s run failed", self.name)
