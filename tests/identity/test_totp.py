"""TOTP against RFC 6238 appendix B, and the one-step-either-side window."""

from __future__ import annotations

import base64

import pyotp
import pytest

from storefront.identity.mfa import matching_step

# RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890", 8 digits
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("at", "expected"), VECTORS)
def test_rfc_6238_appendix_b_sha1_vectors(at: int, expected: str) -> None:
    totp = pyotp.TOTP(RFC_SECRET, digits=8)
    assert totp.at(at) == expected
    assert matching_step(totp, expected, at) == at // 30


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)]
)
def test_one_step_either_side_is_accepted_two_are_not(offset: int, accepted: bool) -> None:
    totp = pyotp.TOTP(RFC_SECRET, digits=8)
    now = 1234567890
    code = totp.at(now + offset * 30)
    step = matching_step(totp, code, now)
    assert (step is not None) is accepted
    if accepted:
        assert step == now // 30 + offset


def test_a_wrong_code_matches_no_step() -> None:
    totp = pyotp.TOTP(RFC_SECRET, digits=8)
    assert matching_step(totp, "00000000", 1234567890) is None
