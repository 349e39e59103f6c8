"""Identity hardening: recent sign-in for MFA enrolment, one throttle for every
second-factor check, lock-out that an attacker cannot turn on the owner, one email
normalisation everywhere.

Runs on SQLite and PostgreSQL, each with the throttling counters in-process and in Redis
(the ``build`` harness of test_sessions_and_mfa).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx2
import msgpack
import pyotp
import pytest

from tests.identity import test_sessions_and_mfa as base
from tests.identity.test_sessions_and_mfa import (
    PASSWORD_CHANGE,
    REGISTER,
    TOTP,
    TOTP_CONFIRM,
    Build,
    Harness,
    bearer,
    current_step,
    mfa_token,
    mfa_user,
    stale_token,
    totp_clock,  # noqa: F401 - autouse: TOTP codes are checked at a set moment
    verify,
)
from tests.support.factories import PASSWORD, V1, unique
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import build as rate_limited
from tests.web.test_rate_limit import client_for, serving

TOKEN = f"{V1}/auth/token"
LOGIN = f"{V1}/auth/login"

# the identity harness's fixtures: apps on SQLite/PostgreSQL x in-process/Redis throttles
store = base.store
build = base.build
h = base.h

# --- item 3: enrolment needs a recent sign-in ---------------------------------------------


async def test_enrolling_mfa_needs_a_recent_sign_in(h: Harness) -> None:
    email = await h.register()
    pair = await h.pair(email)
    stale = stale_token(h, pair["access_token"])
    r = await h.client.post(TOTP, headers=bearer(stale))
    body = assert_problem(r, 401, slug="recent-auth-required")
    assert body["max_age"] == 600
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    # with a fresh sign-in it works
    fresh = await h.client.post(TOTP, headers=bearer(pair["access_token"]))
    assert fresh.status_code == 201, fresh.text


async def test_confirming_mfa_needs_a_recent_sign_in(h: Harness) -> None:
    email = await h.register()
    pair = await h.pair(email)
    enrolment = await h.client.post(TOTP, headers=bearer(pair["access_token"]))
    assert enrolment.status_code == 201, enrolment.text
    step = current_step()
    code = pyotp.TOTP(enrolment.json()["secret"]).generate_otp(step)
    stale = stale_token(h, pair["access_token"])
    r = await h.client.post(TOTP_CONFIRM, json={"code": code}, headers=bearer(stale))
    assert_problem(r, 401, slug="recent-auth-required")
    assert "access_token" in (await h.login(email)).json()  # MFA still off
    ok = await h.client.post(
        TOTP_CONFIRM, json={"code": code}, headers=bearer(pair["access_token"])
    )
    assert ok.status_code == 200, ok.text
    assert (await h.login(email)).json()["mfa_required"] is True


# --- item 4: one throttle for every second-factor check ------------------------------------


async def _remove(h: Harness, access: str, code: str) -> httpx2.Response:
    return await h.client.request("DELETE", TOTP, json={"code": code}, headers=bearer(access))


async def test_wrong_codes_at_removal_are_throttled(build: Build) -> None:
    h = await build(throttle_account_max_failures=3)
    user = await mfa_user(h)
    for _ in range(3):
        assert_problem(await _remove(h, user.access_token, "000000"), 401)
    step = current_step()
    r = await _remove(h, user.access_token, user.code(step))  # even the right code waits
    assert_problem(r, 429, slug="sign-in-throttled")
    assert int(r.headers["retry-after"]) >= 1
    assert (await h.login(user.email)).json()["mfa_required"] is True  # still on
    assert "mfa.totp.remove_throttled" in h.sink.names()


async def test_removal_and_sign_in_share_one_code_budget(build: Build) -> None:
    h = await build(throttle_account_max_failures=3)
    user = await mfa_user(h)
    token = await mfa_token(h, user.email)
    assert_problem(await _remove(h, user.access_token, "000000"), 401)
    assert_problem(await _remove(h, user.access_token, "111111"), 401)
    assert_problem(await verify(h, token, "222222"), 401)  # the third wrong code, elsewhere
    # both places are locked now, even for a right code
    assert_problem(await verify(h, token, user.recovery_codes[0]), 429, slug="sign-in-throttled")
    assert_problem(await _remove(h, user.access_token, user.recovery_codes[1]), 429)


async def test_wrong_codes_at_confirmation_count_too(build: Build) -> None:
    h = await build(throttle_account_max_failures=2)
    email = await h.register()
    pair = await h.pair(email)
    assert (await h.client.post(TOTP, headers=bearer(pair["access_token"]))).status_code == 201
    for _ in range(2):
        r = await h.client.post(
            TOTP_CONFIRM, json={"code": "000000"}, headers=bearer(pair["access_token"])
        )
        assert_problem(r, 401)
    r = await h.client.post(
        TOTP_CONFIRM, json={"code": "000000"}, headers=bearer(pair["access_token"])
    )
    assert_problem(r, 429, slug="sign-in-throttled")


# --- item 14: one email normalisation everywhere -------------------------------------------


async def test_an_address_registered_decomposed_signs_in_in_either_form(h: Harness) -> None:
    name = unique("jose")
    decomposed = f"{name}e\u0301@exa\u0301mple.com"  # e + combining acute, a + combining acute
    composed = f"{name}\u00e9@ex\u00e1mple.com"
    r = await h.client.post(
        REGISTER, json={"email": decomposed, "password": PASSWORD, "display_name": "J"}
    )
    assert r.status_code == 201, r.text
    for typed in (decomposed, composed, composed.upper(), f"  {decomposed}  "):
        login = await h.login(typed)
        assert login.status_code == 200, (typed, login.text)
    # the OAuth2 form route finds the account the same way
    form = await h.client.post(TOKEN, data={"username": decomposed, "password": PASSWORD})
    assert form.status_code == 200, form.text
    ascii_domain = await h.login(f"{name}\u00e9@xn--exmple-qta.com")
    assert ascii_domain.status_code == 200, ascii_domain.text
    # and registering the other form again is the same account
    again = await h.client.post(
        REGISTER, json={"email": composed, "password": PASSWORD, "display_name": "J"}
    )
    assert_problem(again, 409)


async def test_failed_sign_ins_in_another_form_count_for_the_same_account(build: Build) -> None:
    h = await build(throttle_account_max_failures=2, throttle_address_max_failures=100)
    name = unique("zoe")
    await h.register(f"{name}\u00eb@example.com")
    assert_problem(await h.login(f"{name}e\u0308@example.com", "wrong-password-guess"), 401)
    assert_problem(await h.login(f"{name.upper()}\u00cb@EXAMPLE.COM", "wrong-guess-two"), 401)
    assert_problem(await h.login(f"{name}\u00eb@example.com", "wrong-guess-three"), 429)


# --- item 5: lock-out that an attacker cannot turn on the owner ----------------------------

DEVICE_COOKIE = "__Host-storefront-device"


async def _login_from(
    h: Harness, address: str, email: str, password: str = PASSWORD, device: str | None = None
) -> httpx2.Response:
    headers = {"X-Forwarded-For": address}
    if device is not None:
        headers["Cookie"] = f"{DEVICE_COOKIE}={device}"
    return await h.client.post(LOGIN, json={"email": email, "password": password}, headers=headers)


def _device_cookie(r: httpx2.Response) -> str:
    [header] = [v for v in r.headers.get_list("set-cookie") if v.startswith(DEVICE_COOKIE)]
    attributes = {part.strip().lower() for part in header.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes, header
    return header.split(";", 1)[0].split("=", 1)[1]


async def test_guessing_from_one_address_does_not_lock_the_owner_out(build: Build) -> None:
    h = await build(
        trusted_proxies=["127.0.0.1/32"],
        throttle_account_max_failures=3,
        throttle_address_max_failures=100,
    )
    email = await h.register()
    attacker = "203.0.113.66"
    for _ in range(3):
        assert_problem(await _login_from(h, attacker, email, "wrong-password-guess"), 401)
    for _ in range(5):  # the attacker's address stays locked, even with the right password
        assert_problem(await _login_from(h, attacker, email, PASSWORD), 429)
    owner = await _login_from(h, "198.51.100.7", email)  # another address, no device cookie
    assert owner.status_code == 200, owner.text
    assert "access_token" in owner.json()


async def test_guessing_from_many_addresses_is_bounded_but_the_owners_device_passes(
    build: Build,
) -> None:
    h = await build(
        trusted_proxies=["127.0.0.1/32"],
        throttle_account_max_failures=3,
        throttle_address_max_failures=100,
        throttle_untrusted_max_failures=6,
    )
    email = await h.register()
    first = await _login_from(h, "198.51.100.7", email)  # the owner's earlier sign-in
    assert first.status_code == 200, first.text
    device = _device_cookie(first)
    other = await h.register()
    other_device = _device_cookie(await _login_from(h, "198.51.100.8", other))

    # an attacker rotating addresses: two guesses each, under the per-address limit of 3
    refused = 0
    for i in range(20):
        r = await _login_from(h, f"203.0.113.{i + 1}", email, f"wrong-guess-{i}-{i}-{i}")
        if r.status_code == 429:
            refused += 1
        else:
            assert_problem(r, 401)
    assert refused >= 20 - 6, refused  # at most 6 guesses reached the password check
    # now the account is locked for every unknown device, the right password included
    assert_problem(await _login_from(h, "192.0.2.200", email), 429, slug="sign-in-throttled")
    # a forged cookie, or another account's cookie, is an unknown device
    assert_problem(await _login_from(h, "192.0.2.200", email, device=other_device), 429)
    assert_problem(await _login_from(h, "192.0.2.200", email, device=device + "x"), 429)
    # the owner's browser (its device cookie) still signs in, from any address
    ok = await _login_from(h, "192.0.2.201", email, device=device)
    assert ok.status_code == 200, ok.text
    assert _device_cookie(ok) != device  # a fresh cookie on every correct password


async def test_a_known_device_has_its_own_guess_budget(build: Build) -> None:
    h = await build(
        trusted_proxies=["127.0.0.1/32"],
        throttle_account_max_failures=3,
        throttle_address_max_failures=100,
    )
    email = await h.register()
    device = _device_cookie(await _login_from(h, "198.51.100.7", email))
    for i in range(3):
        r = await _login_from(h, f"203.0.113.{i + 1}", email, "wrong-password-guess", device)
        assert_problem(r, 401)
    # a stolen cookie buys one device's budget, whatever address it is used from
    locked = await _login_from(h, "203.0.113.50", email, PASSWORD, device)
    assert_problem(locked, 429, slug="sign-in-throttled")
    # the owner without that cookie is not affected
    assert (await _login_from(h, "198.51.100.7", email)).status_code == 200


# --- item 11: the per-account sign-in budget, whatever the encoding and size ---------------


def _padded_json(email: str) -> dict[str, Any]:
    body = json.dumps({"email": email, "password": "wrong-password-1"}) + " " * 20_000
    return {"content": body.encode(), "headers": {"Content-Type": "application/json"}}


def _multipart(email: str) -> dict[str, Any]:
    return {
        "data": {"username": email, "password": "wrong-password-1"},
        "files": {"padding": ("padding.txt", b"x" * 20_000, "text/plain")},
    }


def _urlencoded(email: str) -> dict[str, Any]:
    return {"data": {"username": email, "password": "wrong-password-1", "pad": "x" * 20_000}}


def _repeated_field(email: str) -> dict[str, Any]:
    # the route takes the last value: the budget must name the same account
    body = f"username=decoy%40example.com&password=x&username={quote(email)}&password=y"
    return {
        "content": body.encode(),
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }


def _msgpack(email: str) -> dict[str, Any]:
    # the API takes MessagePack wherever it takes JSON (web/msgpack_bodies.py); the budget
    # read the body as JSON, found no account and charged none
    body = msgpack.packb({"email": email, "password": "wrong-password-1"})
    return {"content": body, "headers": {"Content-Type": "application/msgpack"}}


ENCODINGS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "msgpack": (LOGIN, _msgpack),
    "padded-json": (LOGIN, _padded_json),
    "multipart": (TOKEN, _multipart),
    "urlencoded-padded": (TOKEN, _urlencoded),
    "repeated-field": (TOKEN, _repeated_field),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
async def test_every_encoding_spends_the_accounts_sign_in_budget(
    sqlite_url: str, redis_url: str, redis_prefix: str, encoding: str
) -> None:
    app = rate_limited(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"auth_rate": "100/minute", "auth_account_rate": "1/minute"},
    )
    route, request = ENCODINGS[encoding]
    victim = f"{unique('victim')}@Example.com"
    async with serving(app):
        first, second = client_for(app, "192.0.2.10"), client_for(app, "192.0.2.20")
        async with first, second:
            r = await first.post(route, **request(victim))
            assert r.status_code == 401, r.text
            assert '"auth-account";q=1;w=60' in r.headers["RateLimit-Policy"]
            # the budget of that account is spent, for any address and spelling
            again = await second.post(
                LOGIN, json={"email": f"  {victim.upper()}", "password": "wrong-password-2"}
            )
            body = assert_problem(again, 429)
            assert "auth-account" in body["detail"]


async def test_others_spending_the_accounts_request_budget_do_not_stop_the_owners_device(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The rate limiter's per-account budget (``auth-account``) is keyed like the sign-in
    throttle (decision 0100): requests from unknown devices share it, a valid device cookie
    for the account has a budget of its own. Ten wrong sign-ins a minute from anywhere
    locked the owner's browser out for as long as an attacker kept them coming."""
    app = rate_limited(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"auth_rate": "100/minute", "auth_account_rate": "3/minute"},
    )
    email = f"{unique('owner')}@example.com"
    right = {"email": email, "password": PASSWORD}
    async with serving(app):
        owner, attacker = client_for(app, "198.51.100.7"), client_for(app, "203.0.113.66")
        stranger, other = client_for(app, "192.0.2.9"), client_for(app, "192.0.2.10")
        async with owner, attacker, stranger, other:
            r = await owner.post(REGISTER, json={**right, "display_name": "Owner"})
            assert r.status_code == 201, r.text
            first = await owner.post(LOGIN, json=right)
            assert first.status_code == 200, first.text
            device = _device_cookie(first)
            other_email = f"{unique('other')}@example.com"
            other_right = {"email": other_email, "password": PASSWORD}
            r = await other.post(REGISTER, json={**other_right, "display_name": "Other"})
            assert r.status_code == 201, r.text
            other_device = _device_cookie(await other.post(LOGIN, json=other_right))

            # an attacker spends what is left of the account's budget for unknown devices
            wrong = {"email": email, "password": "wrong-password-guess"}
            statuses = [(await attacker.post(LOGIN, json=wrong)).status_code for _ in range(4)]
            assert statuses[-1] == 429, statuses
            # every unknown device now waits, the right password included; so does a forged
            # cookie or another account's cookie
            for cookie in (None, device + "x", other_device):
                headers = {} if cookie is None else {"Cookie": f"{DEVICE_COOKIE}={cookie}"}
                body = assert_problem(await stranger.post(LOGIN, json=right, headers=headers), 429)
                assert "auth-account" in body["detail"]
            # the owner's browser still signs in
            mine = {"Cookie": f"{DEVICE_COOKIE}={device}"}
            ok = await owner.post(LOGIN, json=right, headers=mine)
            assert ok.status_code == 200, ok.text
            # ...and a stolen cookie buys one device's budget, no more
            refused = [
                (await attacker.post(LOGIN, json=wrong, headers=mine)).status_code for _ in range(3)
            ]
            assert refused[-1] == 429, refused


# --- item 13: what ASVS 6.2.4 means by a weak password --------------------------------------

WEAK = {
    "digits-in-sequence": "123456789012",
    "a-word-twice": "passwordpassword",
    "common-word-padded": "Password1234!",
    "leet-and-padded": "p@$$w0rd2024!!",
    "padded-in-front": "2024Password!",
    "twelve-identical": "aaaaaaaaaaaa",
    "twelve-spaces": " " * 12,
    "twelve-zero-width-spaces": "\u200b" * 12,
    "invisible-padding": "tiger\u200b\u200b\u200b\u200b\u200b\u200b\u200b",
    "controls-only": "\t\n\r\x0b\x0c\x1f\x1e\x1d\x1c\x1b\x1a\x19",
    "a-short-string-repeated": "abcabcabcabc",
    "a-word-repeated-with-separators": "nope-nope-nope-nope",
    "two-runs": "abcdef123456",
    "keyboard-row": "qwertyuiop12",
    "spaced-out-word": "P a s s w o r d 1",
}
STRONG = {
    "passphrase": "correct horse battery staple",
    "passphrase-with-number": "purple-monkey-dishwasher-42",
    "random": "zq8$Lm2!vR4#",
    "word-inside-other-words": "Tr0ub4dor&3-horse-sky",
    "unicode": "pässwörd-ünïcödé-日本語-🔑",
}


@pytest.mark.parametrize("password", list(WEAK.values()), ids=list(WEAK))
async def test_weak_passwords_that_fit_the_length_are_refused(h: Harness, password: str) -> None:
    r = await h.client.post(
        REGISTER,
        json={"email": f"{unique('weak')}@example.com", "password": password, "display_name": "W"},
    )
    body = assert_problem(r, 422, slug="weak-password")
    assert body["detail"]


@pytest.mark.parametrize("password", list(STRONG.values()), ids=list(STRONG))
async def test_strong_passwords_are_still_accepted(h: Harness, password: str) -> None:
    email = await h.register(password=password)
    assert (await h.login(email, password)).status_code == 200


# --- more of the same kind: guessing the current password at a change ----------------------


async def test_wrong_current_passwords_at_a_change_are_throttled(build: Build) -> None:
    h = await build(throttle_account_max_failures=3)
    email = await h.register()
    pair = await h.pair(email)

    async def change(current: str) -> httpx2.Response:
        return await h.client.post(
            PASSWORD_CHANGE,
            json={"current_password": current, "new_password": "a-brand-new-passphrase"},
            headers=bearer(pair["access_token"]),
        )

    for i in range(3):
        assert_problem(await change(f"guess-number-{i}"), 403)
    r = await change(PASSWORD)  # even the right password waits now
    assert_problem(r, 429, slug="sign-in-throttled")
    assert int(r.headers["retry-after"]) >= 1
    assert "password.change_throttled" in h.sink.names()
    assert (await h.login(email)).status_code == 200  # unchanged, and sign-in unaffected
