"""A real SMTP server for tests: aiosmtpd on a free loopback port, keeping what it receives."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.servers import free_port


@dataclass
class Inbox:
    """Refuses the first ``fail_first`` deliveries with a temporary error (451)."""

    fail_first: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.fail_first:
            return "451 4.3.0 Temporary failure, try again later"
        message = message_from_bytes(envelope.content, policy=default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    async def wait_for(self, count: int = 1, within: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + within
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.messages)} of {count} message(s) after {within}s "
                    f"({len(self.attempts)} delivery attempt(s))"
                )
            await asyncio.sleep(0.05)
        return list(self.messages)


class SmtpServer:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.port = free_port()
        self._controller = Controller(inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def settings(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "sender": "Shop <orders@shop.test>"}
