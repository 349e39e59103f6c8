"""Device cookies (OWASP "Slow down online guessing attacks with device cookies").

After a correct password the browser gets a cookie naming the account (by the digest the
throttles use), a random device id, the time it was issued and an HMAC over all three. A
later sign-in that presents a valid cookie for the account it targets is a *known device*:
its failures are counted for that device alone, and the account-wide lock-out that guessing
from unknown devices triggers does not apply to it. So an attacker who rotates addresses
can lock out unknown devices, never the owner's browser, and one stolen cookie buys the
thief no more than a single device's budget.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time

from storefront.kit.secretbox import SecretBox

COOKIE = "__Host-storefront-device"  # __Host-: Secure, Path=/, never a Domain attribute
_PURPOSE = "storefront device cookies"


class DeviceCookies:
    def __init__(self, secret: str, *, max_age_seconds: int) -> None:
        self._box = SecretBox(secret, purpose=_PURPOSE)
        self.max_age_seconds = max_age_seconds

    def _mac(self, account: str, device: str, issued: str) -> str:
        return self._box.mac(f"{account}|{device}|{issued}".encode())

    def issue(self, account: str, *, now: float | None = None) -> str:
        device = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        issued = str(int(now if now is not None else time.time()))
        return f"{device}.{issued}.{self._mac(account, device, issued)}"

    def device_of(
        self, account: str, cookie: str | None, *, now: float | None = None
    ) -> str | None:
        """The device id when ``cookie`` is a valid, unexpired cookie for ``account``."""
        if not cookie or len(cookie) > 256:
            return None
        device, _, rest = cookie.partition(".")
        issued, _, mac = rest.partition(".")
        if not device or not issued.isdigit() or not mac:
            return None
        if not hmac.compare_digest(mac, self._mac(account, device, issued)):
            return None
        age = (now if now is not None else time.time()) - int(issued)
        if age < 0 or age > self.max_age_seconds:
            return None
        return device
