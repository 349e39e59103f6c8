"""The orders domain's background jobs."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from storefront.identity.service import contact_of
from storefront.jobs.queue import job
from storefront.orders.repository import OrderRepository
from storefront.orders.sealing import open_addresses
from storefront.shops.service import ShopService

if TYPE_CHECKING:
    from storefront.orders.models import Order
    from storefront.resources import Resources

logger = logging.getLogger("storefront.orders.tasks")


def _money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def confirmation_text(
    order: Order, *, shop_name: str, customer_name: str, address: dict[str, Any]
) -> str:
    lines = [
        f"Hello {customer_name},",
        "",
        f"thank you for your order at {shop_name}.",
        "",
        f"Order: {order.id}",
        f"Status: {order.status.value}",
        "",
    ]
    for line in order.lines:
        lines.append(
            f"  {line.quantity} x {line.name} ({line.sku}) "
            f"@ {_money(line.unit_price_cents, order.currency)} "
            f"= {_money(line.line_total_cents, order.currency)}"
        )
    lines += ["", f"Total: {_money(order.total_cents, order.currency)}", ""]
    lines.append("Shipping to:")
    for key in ("name", "line1", "line2", "postal_code", "city", "country"):
        if address.get(key):
            lines.append(f"  {address[key]}")
    return "\n".join(lines) + "\n"


@job("orders.send_confirmation")
async def send_order_confirmation(resources: Resources, *, shop_id: str, order_id: str) -> None:
    """Email the customer their order. Raises on SMTP failure, so the job is retried.

    Idempotent under at-least-once delivery: the order records when its confirmation went
    out (``confirmation_sent_at``, set after the SMTP server accepted it) and a delivery that
    finds it set sends nothing. Two deliveries running at the same moment, or a crash between
    the SMTP server's acceptance and that record, can still mail twice; both copies carry the
    same Message-ID, by which mail systems recognise the duplicate.
    """
    if resources.mailer is None:
        logger.debug("mail is off (no STOREFRONT_SMTP__HOST); order %s not mailed", order_id)
        return
    async with resources.sessionmaker() as session:
        repo = OrderRepository(session, uuid.UUID(shop_id), customer_id=None)
        order = await repo.get(uuid.UUID(order_id))
        if order is None or order.customer_id is None:
            logger.warning("order %s is gone; no confirmation sent", order_id)
            return
        if order.confirmation_sent_at is not None:
            logger.info("order confirmation for %s was sent before; not again", order_id)
            return
        contact = await contact_of(session, order.customer_id, vault=resources.vault)
        (address,) = await open_addresses(session, [order], vault=resources.vault)
        shop = await ShopService(session).get(order.shop_id)
    if contact is None or address is None:
        logger.info("customer of order %s is gone or erased; no confirmation sent", order_id)
        return
    email, name = contact
    message = resources.mailer.message(
        to=email,
        subject=f"Your order at {shop.name} ({str(order.id)[:8]})",
        text=confirmation_text(order, shop_name=shop.name, customer_name=name, address=address),
    )
    # one Message-ID per order: a retried delivery is recognisably the same message
    del message["Message-ID"]
    message["Message-ID"] = f"<order-{order.id}@storefront>"
    # not retried here (an SMTP timeout after DATA may have delivered): the job retries
    async with resources.resilience.guard("mail"):
        await resources.mailer.send(message)
    try:
        async with resources.sessionmaker() as session, session.begin():
            repo = OrderRepository(session, order.shop_id, customer_id=None)
            await repo.mark_confirmation_sent(order.id)
    except Exception:
        # the mail went out: failing the job now would only send it again
        logger.exception("order confirmation for %s sent but not recorded", order_id)
        return
    logger.info("order confirmation for %s sent", order_id)


JOBS = (send_order_confirmation,)  # what this domain runs in the job queue
