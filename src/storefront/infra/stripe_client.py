"""The payment provider's SDK clients (Stripe's official ``stripe`` package, its aiohttp
transport): opened and closed with the other resources, used only by
``storefront.payments.provider.StripeProvider``, which makes every call.

The provider's address is the discovered service ``payments`` (decision 0139; by default
STOREFRONT_PAYMENTS__API_BASE). The SDK fixes its address when a client is built, so there is
one ``StripeClient`` per endpoint (:class:`~storefront.infra.discovery.PerEndpoint`), all on
one HTTP session: dropping a client leaves nothing open.

The SDK's own retries are off (``max_network_retries=0``): a retry is a decision of the
caller, which knows whether the call is idempotent at this provider (the emulator ignores
idempotency keys; docs/decisions/0137-payment-state-machine.md)."""

from __future__ import annotations

import aiohttp
import stripe

from storefront.infra.discovery import PerEndpoint, ServiceEndpoints
from storefront.kit.endpoints import Endpoint
from storefront.settings import PaymentsSettings


class StripeConnection:
    """One HTTP session (created in the running loop on first use, closed by
    :meth:`aclose`) and an SDK client per endpoint of the provider's service."""

    def __init__(
        self, settings: PaymentsSettings, secret_key: str, endpoints: ServiceEndpoints
    ) -> None:
        self.settings = settings
        self._secret_key = secret_key
        self.http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(
                total=settings.timeout_seconds, sock_connect=settings.connect_timeout_seconds
            )
        )
        self.clients: PerEndpoint[stripe.StripeClient] = PerEndpoint(endpoints, self._client)

    def _client(self, endpoint: Endpoint) -> stripe.StripeClient:
        return stripe.StripeClient(
            self._secret_key,
            base_addresses={"api": endpoint.url},
            http_client=self.http,
            max_network_retries=0,
        )

    async def aclose(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]


def build_stripe(
    settings: PaymentsSettings, endpoints: ServiceEndpoints
) -> StripeConnection | None:
    """None without a secret key: payments are not configured (paying answers 503).
    ``endpoints``: the discovered ``payments`` service."""
    if settings.secret_key is None:
        return None
    return StripeConnection(settings, settings.secret_key.get_secret_value(), endpoints)
