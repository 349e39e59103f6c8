"""Everything identity's security rules need from the process, built once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.auditlog import LoggingSecurityEventSink, SecurityEventSink
from storefront.auth.devices import DeviceCookies
from storefront.auth.revocation import RevocationList
from storefront.auth.signing_keys import KeyStore
from storefront.auth.throttle import Throttle, ThrottlePolicy
from storefront.kit.secretbox import SecretBox
from storefront.settings import AuthSettings

KEY_PURPOSE = "storefront signing keys"


@dataclass(slots=True)
class SecurityKit:
    auth: AuthSettings
    keys: KeyStore
    revocations: RevocationList
    # decision 0100: an account from unknown devices (all addresses together), one account
    # from one address, one account from one known device, one address, second factors
    account_throttle: Throttle
    pair_throttle: Throttle
    device_throttle: Throttle
    address_throttle: Throttle
    mfa_throttle: Throttle
    totp_box: SecretBox
    audit: SecurityEventSink
    devices: DeviceCookies


def build_security_kit(
    auth: AuthSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis | None,
    redis_prefix: str,
) -> SecurityKit:
    secret = auth.jwt_secret.get_secret_value()

    def throttle(name: str, max_failures: int) -> Throttle:
        policy = ThrottlePolicy(
            max_failures=max_failures,
            window_seconds=auth.throttle_window_seconds,
            base_delay_seconds=auth.throttle_base_delay_seconds,
            max_delay_seconds=auth.throttle_max_delay_seconds,
        )
        return Throttle(redis, redis_prefix, name, policy)

    return SecurityKit(
        auth=auth,
        keys=KeyStore(
            sessionmaker,
            SecretBox(secret, purpose=KEY_PURPOSE),
            # the previous signer's tokens live at most one access-token lifetime, plus the
            # time other processes take to notice a rotation
            keep_seconds=auth.access_token_ttl_seconds + 120,
        ),
        revocations=RevocationList(redis, redis_prefix),
        account_throttle=throttle("account", auth.throttle_untrusted_max_failures),
        pair_throttle=throttle("account-address", auth.throttle_account_max_failures),
        device_throttle=throttle("device", auth.throttle_account_max_failures),
        address_throttle=throttle("address", auth.throttle_address_max_failures),
        mfa_throttle=throttle("mfa", auth.throttle_account_max_failures),
        totp_box=SecretBox(secret, purpose="storefront totp seeds"),
        audit=LoggingSecurityEventSink(),
        devices=DeviceCookies(secret, max_age_seconds=auth.device_cookie_days * 86400),
    )
