"""Outgoing mail over SMTP with aiosmtplib (async: never blocks the event loop)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib


@dataclass(frozen=True, slots=True)
class Mailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    security: str = "none"  # "none", "starttls" or "tls"
    timeout_seconds: float = 10.0

    def message(self, *, to: str, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="storefront")
        msg.set_content(text)
        return msg

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message``; any SMTP or connection error is raised (the job retries)."""
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",  # never opportunistic: configured or off
            timeout=self.timeout_seconds,
        )
