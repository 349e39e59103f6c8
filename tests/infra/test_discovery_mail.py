"""The mail server is the discovered service "mail": STOREFRONT_SMTP__HOST/PORT by default,
or several servers, or SRV records; a server that refuses the connection is left out and the
next one gets the message at once (real aiosmtpd servers, a real DNS server)."""

from __future__ import annotations

from typing import Any

from storefront.infra.discovery import ServiceDiscovery
from storefront.infra.mail import Mailer
from storefront.kit.endpoints import Endpoint
from storefront.resources import build_mailer, build_service_discovery
from storefront.settings import Settings
from tests.support.dns import DnsServer, Zone
from tests.support.mail import Inbox, SmtpServer
from tests.support.servers import free_port


def mail_for(**settings: Any) -> tuple[ServiceDiscovery, Mailer | None]:
    built = Settings(**settings)
    discovery = build_service_discovery(built)
    return discovery, build_mailer(built, discovery)


async def send(mailer: Mailer, subject: str) -> None:
    await mailer.send(mailer.message(to="buyer@shop.test", subject=subject, text="thanks"))


async def test_smtp_host_and_port_are_the_default_mail_service() -> None:
    inbox = Inbox()
    with SmtpServer(inbox) as smtp:
        discovery, mailer = mail_for(smtp=smtp.settings)
        assert mailer is not None
        assert await discovery.endpoints("mail") == (Endpoint("127.0.0.1", smtp.port),)
        # and the payment provider is STOREFRONT_PAYMENTS__API_BASE
        assert (await discovery.pick("payments")).url == "https://api.stripe.com:443"
        await send(mailer, "order 1")
        [message] = await inbox.wait_for(1)
        assert message["Subject"] == "order 1"
    assert mail_for()[1] is None  # no SMTP host, no mail service: mail is off


async def test_a_refusing_server_is_skipped_and_left_out() -> None:
    inbox = Inbox()
    dead = free_port()  # nothing listens: connections are refused
    with SmtpServer(inbox) as smtp:
        discovery, mailer = mail_for(
            smtp={"sender": "Shop <orders@shop.test>"},
            discovery={"services": {"mail": {"urls": f"127.0.0.1:{dead},127.0.0.1:{smtp.port}"}}},
        )
        assert mailer is not None
        for n in range(3):
            await send(mailer, f"order {n}")
        messages = await inbox.wait_for(3)
        assert sorted(m["Subject"] for m in messages) == ["order 0", "order 1", "order 2"]
        assert len(inbox.attempts) == 3  # each delivered once
        live = Endpoint("127.0.0.1", smtp.port)
        assert [await discovery.pick("mail") for _ in range(3)] == [live] * 3  # dead: out


async def test_mail_servers_from_srv_records() -> None:
    inbox = Inbox()
    dead = free_port()
    with SmtpServer(inbox) as smtp:
        zone = Zone(
            f"""
            _smtp._tcp.mail.test. 30 IN SRV 5 1 {dead} down.mail.test.
            _smtp._tcp.mail.test. 30 IN SRV 10 1 {smtp.port} mx.mail.test.
            down.mail.test. 30 IN A 127.0.0.1
            mx.mail.test. 30 IN A 127.0.0.1
            """
        )
        with DnsServer(zone) as dns:
            discovery, mailer = mail_for(
                smtp={"sender": "Shop <orders@shop.test>"},
                discovery={"services": {"mail": {"srv": "_smtp._tcp.mail.test"}}, **dns.settings},
            )
            assert mailer is not None
            # the preferred server (priority 5) refuses: the message goes to priority 10
            await send(mailer, "order 7")
            [message] = await inbox.wait_for(1)
            assert message["Subject"] == "order 7"
            assert await discovery.pick("mail") == Endpoint(
                "127.0.0.1", smtp.port, server_name="mx.mail.test"
            )
