"""Serving concerns the app owns: drain before shutdown, per-worker metrics directory, the
start-up heap kept out of the garbage collector.

Drain: on the first SIGTERM, readiness starts failing at once (so the load balancer stops
routing here) while the server keeps serving; ``drain_seconds`` later uvicorn's own graceful
shutdown begins (stop accepting, finish in-flight requests, run the lifespan shutdown). A
second SIGTERM, or Ctrl-C, stops without waiting.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from storefront.resources import Draining
from storefront.telemetry.metrics import MULTIPROC_ENV

logger = logging.getLogger("storefront.serving")


def install_drain_on_sigterm(drain_seconds: float, draining: Draining) -> bool:
    """Wrap uvicorn's SIGTERM handler (only when running under uvicorn's signal capture, in
    its main thread: never inside tests or other hosts): the first SIGTERM sets ``draining``.
    Returns whether it was installed."""
    if drain_seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return False
    uvicorn_handler: Any = signal.getsignal(signal.SIGTERM)
    if not isinstance(getattr(uvicorn_handler, "__self__", None), uvicorn.Server):
        return False
    loop = asyncio.get_running_loop()

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if draining.active:  # a second SIGTERM: stop draining, shut down now
            uvicorn_handler(sig, frame)
            return
        draining.begin()
        logger.warning(
            "SIGTERM: draining for %.1fs (readiness fails) before graceful shutdown",
            drain_seconds,
        )
        loop.call_soon_threadsafe(loop.call_later, drain_seconds, uvicorn_handler, sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True


def prepare_multiprocess_metrics(workers: int) -> str | None:
    """With several workers, give prometheus-client a fresh shared directory (before the
    workers start, so each one sees it when it first imports the client)."""
    if workers <= 1:
        return os.environ.get(MULTIPROC_ENV) or None
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        if directory.exists():
            shutil.rmtree(directory)  # samples of a previous run would be summed in
        directory.mkdir(parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="storefront-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    return str(directory)


def freeze_heap_after_startup(app: FastAPI) -> FastAPI:
    """Once the app has started (modules, routes, schemas, pools, caches: several hundred
    thousand objects that live as long as the process), move them out of the garbage
    collector's reach (``gc.freeze``), so its full collections walk only what requests
    created. Measured under load: 40-55% of a worker's CPU went to full collections that
    walked the start-up heap every couple of seconds (decision 0192)."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with started(app) as state:
            gc.collect()  # what start-up left behind goes now, not frozen for ever
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app
