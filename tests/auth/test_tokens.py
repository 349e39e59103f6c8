"""TokenService: EdDSA-signed access tokens with a kid, and everything that must not verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from storefront.auth.signing_keys import KeyRing, SigningKey, generate_key
from storefront.auth.tokens import ACCESS, InvalidToken, TokenService, UnknownKey
from tests.support.identity import (
    access_claims,
    b64url,
    private_half,
    signed_token,
    unsigned_token,
)

KEY = generate_key()
ISSUER = "storefront"
AUDIENCE = "storefront-api"
TTL = 900


def service(**overrides: Any) -> TokenService:
    values: dict[str, Any] = {
        "keys": KeyRing([KEY]),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "access_ttl_seconds": TTL,
    }
    values.update(overrides)
    return TokenService(**values)


@pytest.fixture
def tokens() -> TokenService:
    return service()


def subject() -> str:
    return str(uuid.uuid4())


def key_signed(claims: dict[str, Any], key: SigningKey = KEY, **header: Any) -> str:
    headers = {"kid": key.kid, **header}
    return jwt.encode(claims, private_half(key), algorithm="EdDSA", headers=headers)


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- what verifies ------------------------------------------------------------------------


def test_round_trip(tokens: TokenService) -> None:
    sub = subject()
    now = datetime.now(UTC).replace(microsecond=0)
    auth_time = now - timedelta(minutes=5)

    token = tokens.issue(sub, session_id="session-1", auth_time=auth_time, now=now)
    claims = tokens.verify(token)

    assert claims.subject == sub
    assert claims.token_type == ACCESS
    assert claims.session_id == "session-1"
    assert claims.issued_at == now
    assert claims.expires_at == now + timedelta(seconds=TTL)
    assert claims.auth_time == auth_time
    assert len(claims.token_id) >= 16


def test_issued_token_carries_the_documented_claims(tokens: TokenService) -> None:
    sub = subject()
    token = tokens.issue(sub, session_id="sid-9")
    header = json.loads(unb64url(token.split(".")[0]))
    raw = jwt.decode(token, options={"verify_signature": False})

    assert header["alg"] == "EdDSA"
    assert header["kid"] == KEY.kid
    assert set(raw) == {"iss", "aud", "sub", "typ", "jti", "iat", "exp", "auth_time", "sid"}
    assert raw["iss"] == ISSUER
    assert raw["aud"] == AUDIENCE
    assert raw["sub"] == sub
    assert raw["typ"] == "access"
    assert raw["sid"] == "sid-9"
    assert raw["exp"] - raw["iat"] == TTL
    assert raw["auth_time"] == raw["iat"]


def test_session_id_is_optional(tokens: TokenService) -> None:
    token = tokens.issue(subject())
    assert "sid" not in jwt.decode(token, options={"verify_signature": False})
    assert tokens.verify(token).session_id is None


def test_each_token_has_its_own_id(tokens: TokenService) -> None:
    sub = subject()
    ids = {tokens.verify(tokens.issue(sub)).token_id for _ in range(5)}
    assert len(ids) == 5


def test_a_custom_ttl(tokens: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    claims = tokens.verify(tokens.issue(subject(), ttl_seconds=60, now=now))
    assert claims.expires_at - claims.issued_at == timedelta(seconds=60)


def test_a_token_of_another_type_verifies_as_that_type(tokens: TokenService) -> None:
    token = tokens.issue(subject(), token_type="mfa")
    assert tokens.verify(token, expected_type="mfa").token_type == "mfa"


def test_a_token_just_short_of_expiry_still_verifies(tokens: TokenService) -> None:
    now = datetime.now(UTC) - timedelta(seconds=TTL - 30)
    assert tokens.verify(tokens.issue(subject(), now=now))


def test_a_hand_built_token_with_the_same_key_verifies(tokens: TokenService) -> None:
    """Control for the refusals below: they differ from this token only in what they test."""
    sub = subject()
    assert tokens.verify(key_signed(access_claims(sub))).subject == sub


# --- what must not verify -----------------------------------------------------------------


def test_an_expired_token_is_refused(tokens: TokenService) -> None:
    issued = datetime.now(UTC) - timedelta(seconds=TTL + 5)
    token = tokens.issue(subject(), now=issued)
    with pytest.raises(InvalidToken, match="xpired"):
        tokens.verify(token)


def test_a_token_from_the_future_is_refused(tokens: TokenService) -> None:
    token = tokens.issue(subject(), now=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize("typ", ["refresh", "mfa", "ACCESS", ""])
def test_a_token_of_the_wrong_type_is_refused(tokens: TokenService, typ: str) -> None:
    token = tokens.issue(subject(), token_type=typ)
    with pytest.raises(InvalidToken, match="type"):
        tokens.verify(token)


def test_an_access_token_is_not_another_type(tokens: TokenService) -> None:
    token = tokens.issue(subject())
    with pytest.raises(InvalidToken):
        tokens.verify(token, expected_type="refresh")


def test_a_token_for_another_audience_is_refused(tokens: TokenService) -> None:
    other = service(audience="billing-api")
    with pytest.raises(InvalidToken):
        tokens.verify(other.issue(subject()))
    with pytest.raises(InvalidToken):
        other.verify(tokens.issue(subject()))


def test_a_token_from_another_issuer_is_refused(tokens: TokenService) -> None:
    other = service(issuer="someone-else")
    with pytest.raises(InvalidToken):
        tokens.verify(other.issue(subject()))


@pytest.mark.parametrize("claims", [{"aud": None}, {"iss": None}, {"aud": ["x", "y"]}])
def test_missing_or_foreign_audience_and_issuer_are_refused(
    tokens: TokenService, claims: dict[str, Any]
) -> None:
    token = key_signed(access_claims(subject(), **claims))
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_a_token_signed_with_another_key_under_our_kid_is_refused(tokens: TokenService) -> None:
    impostor = generate_key()
    forged = jwt.encode(
        access_claims(subject()),
        private_half(impostor),
        algorithm="EdDSA",
        headers={"kid": KEY.kid},
    )
    with pytest.raises(InvalidToken, match="ignature"):
        tokens.verify(forged)


def test_a_token_with_an_unknown_kid_is_refused(tokens: TokenService) -> None:
    other = service(keys=KeyRing([generate_key()]))
    with pytest.raises(UnknownKey):
        tokens.verify(other.issue(subject()))


def test_a_token_without_a_kid_is_refused(tokens: TokenService) -> None:
    token = jwt.encode(access_claims(subject()), private_half(KEY), algorithm="EdDSA")
    with pytest.raises(InvalidToken, match="key id"):
        tokens.verify(token)


def test_after_a_rotation_old_tokens_verify_and_the_new_key_signs() -> None:
    ring = KeyRing([KEY])
    tokens = service(keys=ring)
    before = tokens.issue(subject())
    newer = generate_key(now=KEY.created_at + timedelta(seconds=1))
    ring.add(newer)
    after = tokens.issue(subject())
    assert json.loads(unb64url(after.split(".")[0]))["kid"] == newer.kid
    assert tokens.verify(before).token_type == ACCESS
    assert tokens.verify(after).token_type == ACCESS
    assert [k["kid"] for k in ring.jwks()["keys"]] == [newer.kid, KEY.kid]


def test_the_jwks_holds_public_keys_only() -> None:
    jwks = KeyRing([KEY]).jwks()
    [jwk] = jwks["keys"]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert jwk["kid"] == KEY.kid
    assert "d" not in jwk  # the private part
    assert jwt.PyJWK(jwk).key is not None


def test_a_ring_without_keys_cannot_sign() -> None:
    with pytest.raises(RuntimeError):
        service(keys=KeyRing()).issue(subject())


@pytest.mark.parametrize("byte", [0, 15, -1])
def test_a_tampered_signature_is_refused(tokens: TokenService, byte: int) -> None:
    header, payload, signature = tokens.issue(subject()).split(".")
    raw = bytearray(unb64url(signature))
    raw[byte] ^= 0x01
    forged = f"{header}.{payload}.{b64url(bytes(raw))}"
    with pytest.raises(InvalidToken):
        tokens.verify(forged)


def test_a_stripped_signature_is_refused(tokens: TokenService) -> None:
    header, payload, _signature = tokens.issue(subject()).split(".")
    with pytest.raises(InvalidToken):
        tokens.verify(f"{header}.{payload}.")


def test_a_tampered_payload_is_refused(tokens: TokenService) -> None:
    header, _payload, signature = tokens.issue(subject()).split(".")
    other_claims = access_claims(subject())
    forged = f"{header}.{b64url(json.dumps(other_claims).encode())}.{signature}"
    with pytest.raises(InvalidToken):
        tokens.verify(forged)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_an_unsigned_alg_none_token_is_refused(tokens: TokenService, alg: str) -> None:
    token = unsigned_token(access_claims(subject()), alg=alg)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_alg_none_with_a_signature_attached_is_refused(tokens: TokenService) -> None:
    _header, _payload, signature = tokens.issue(subject()).split(".")
    token = unsigned_token(access_claims(subject()), alg="none", signature=signature)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize("alg", ["HS999", "XYZ", "", "RS256", "ES256", "HS256"])
def test_an_unknown_or_unexpected_algorithm_header_is_refused(
    tokens: TokenService, alg: str
) -> None:
    _header, payload, signature = tokens.issue(subject()).split(".")
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": KEY.kid}).encode())
    with pytest.raises(InvalidToken):
        tokens.verify(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_an_hmac_keyed_with_our_public_key_is_refused(tokens: TokenService, alg: str) -> None:
    """Algorithm confusion: only EdDSA is accepted, never whatever the header names."""
    public = KEY.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": KEY.kid}).encode())
    payload = b64url(json.dumps(access_claims(subject())).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(public, f"{header}.{payload}".encode(), digest).digest()
    with pytest.raises(InvalidToken):
        tokens.verify(f"{header}.{payload}.{b64url(mac)}")


def test_an_hs256_token_with_a_shared_secret_is_refused(tokens: TokenService) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = signed_token(access_claims(subject()), "x" * 40)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "typ", "jti", "auth_time"])
def test_a_token_missing_a_required_claim_is_refused(tokens: TokenService, claim: str) -> None:
    token = key_signed(access_claims(subject(), **{claim: None}))
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", "...", "e30.e30.", "e30.e30.e30", "Bearer x.y.z", "ö.ö.ö"],
)
def test_garbage_is_refused_as_invalid_not_crashed_on(tokens: TokenService, token: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize(
    "claims",
    [{"sub": 42}, {"exp": "tomorrow"}, {"iat": "now"}, {"exp": None, "iat": None}],
    ids=["numeric-sub", "string-exp", "string-iat", "no-times"],
)
def test_malformed_claims_are_refused(tokens: TokenService, claims: dict[str, Any]) -> None:
    token = key_signed(access_claims(subject(), **claims))
    with pytest.raises(InvalidToken):
        tokens.verify(token)


# --- a token verified once is remembered, and still refused when it must be ---------------


def test_the_admin_claim_round_trips(tokens: TokenService) -> None:
    assert tokens.verify(tokens.issue(subject(), admin=True)).admin is True
    assert tokens.verify(tokens.issue(subject(), admin=False)).admin is False
    assert tokens.verify(tokens.issue(subject())).admin is None  # older tokens lack it


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_a_malformed_admin_claim_is_refused(tokens: TokenService, value: Any) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(key_signed({**access_claims(subject()), "adm": value}))


def test_a_remembered_token_skips_the_signature_check(
    tokens: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.issue(subject())
    first = tokens.verify(token)
    decodes: list[str] = []
    original = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decodes.append(token)
        return original(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    assert tokens.verify(token) == first
    assert decodes == []


def test_a_remembered_token_is_refused_once_it_expires(tokens: TokenService) -> None:
    token = tokens.issue(subject(), ttl_seconds=2)
    claims = tokens.verify(token)  # remembered, at most two seconds of life left
    while time.time() < claims.expires_at.timestamp():
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="xpired"):
        tokens.verify(token)


def test_a_remembered_token_is_refused_once_its_key_leaves_the_ring() -> None:
    ring = KeyRing([KEY])
    tokens = service(keys=ring)
    token = tokens.issue(subject())
    tokens.verify(token)
    ring.replace([generate_key()])
    with pytest.raises(UnknownKey):
        tokens.verify(token)


def test_a_remembered_token_is_not_another_type(tokens: TokenService) -> None:
    token = tokens.issue(subject(), token_type="mfa")
    tokens.verify(token, expected_type="mfa")
    with pytest.raises(InvalidToken, match="type"):
        tokens.verify(token)
