"""A streaming response that always closes its body iterator when it ends.

Starlette stops iterating a body when the client disconnects (or ``send`` fails) but leaves
the async generator suspended until garbage collection; a generator that holds a database
connection would keep it checked out until then. This response closes the generator
deterministically (shielded from the cancellation that ended the stream), so the
generator's ``finally`` releases its resources at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._generator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._generator.aclose()
