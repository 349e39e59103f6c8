"""Outgoing mail over SMTP with aiosmtplib (async: never blocks the event loop).

The server is the named service "mail" (infra/discovery.py): STOREFRONT_SMTP__HOST/PORT by
default, or several servers, or DNS. Each message goes to the next server in turn; one that
refuses the connection is reported (out of rotation for a cool-down) and the next is tried
at once: nothing was sent to it, so nothing can be sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from storefront.infra.discovery import ServiceEndpoints
from storefront.kit.endpoints import Endpoint

MAX_SERVERS_PER_MESSAGE = 3  # refused connections tried past before the job retries


@dataclass(frozen=True, slots=True)
class Mailer:
    servers: ServiceEndpoints  # the "mail" service
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
        tried: set[Endpoint] = set()
        refused: aiosmtplib.SMTPConnectError | None = None
        while True:
            server = await self.servers.pick()
            if refused is not None and server in tried:  # every server is out: retry later
                raise refused
            try:
                await aiosmtplib.send(
                    message,
                    # with TLS, the name the certificate is for (an SRV target), else the address
                    hostname=(server.server_name or server.host)
                    if self.security != "none"
                    else server.host,
                    port=server.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.security == "tls",
                    start_tls=self.security == "starttls",  # never opportunistic
                    timeout=self.timeout_seconds,
                )
            except aiosmtplib.SMTPConnectError as exc:  # refused, unreachable, no greeting
                self.servers.report_failure(server)
                tried.add(server)
                if len(tried) >= MAX_SERVERS_PER_MESSAGE:
                    raise
                refused = exc
                continue
            self.servers.report_success(server)
            return
