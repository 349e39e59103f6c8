"""The payment provider's SDK client (Stripe's official ``stripe`` package, its aiohttp
transport): opened and closed with the other resources, used only by
``storefront.payments.provider.StripeProvider``, which makes every call.

The SDK's own retries are off (``max_network_retries=0``): a retry is a decision of the
caller, which knows whether the call is idempotent at this provider (the emulator ignores
idempotency keys; docs/decisions/0137-payment-state-machine.md)."""

from __future__ import annotations

import aiohttp
import stripe

from storefront.settings import PaymentsSettings


class StripeConnection:
    """One SDK client and the HTTP session under it (created in the running loop on first
    use, closed by :meth:`aclose`)."""

    def __init__(self, settings: PaymentsSettings, secret_key: str) -> None:
        self.settings = settings
        self.http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(
                total=settings.timeout_seconds, sock_connect=settings.connect_timeout_seconds
            )
        )
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": settings.api_base},
            http_client=self.http,
            max_network_retries=0,
        )

    async def aclose(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]


def build_stripe(settings: PaymentsSettings) -> StripeConnection | None:
    """None without a secret key: payments are not configured (paying answers 503)."""
    if settings.secret_key is None:
        return None
    return StripeConnection(settings, settings.secret_key.get_secret_value())
