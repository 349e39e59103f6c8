"""Identity over HTTP: registration, sign-in, the OAuth2 token endpoint, the caller's profile."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storefront.resources import Resources
from storefront.settings import DEFAULT_JWT_SECRET, Settings
from tests.support.factories import PASSWORD, V1, Api, unique
from tests.support.identity import (
    access_claims,
    b64url,
    count_users,
    foreign_signed,
    hmac_with_public_key,
    peek_claims,
    set_user,
    sign,
    signed_token,
    unsigned_token,
    user_row,
)
from tests.support.problems import assert_problem, without_request_specific

REGISTER = f"{V1}/auth/register"
LOGIN = f"{V1}/auth/login"
TOKEN = f"{V1}/auth/token"
ME = f"{V1}/users/me"
USER_FIELDS = {"id", "email", "display_name", "created_at"}
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}


def new_email() -> str:
    return f"{unique('id')}@example.com"


def registration(**overrides: Any) -> dict[str, Any]:
    return {"email": new_email(), "password": PASSWORD, "display_name": "Ada", **overrides}


def error_locs(body: dict[str, Any]) -> list[list[Any]]:
    assert isinstance(body["errors"], list)
    assert body["errors"], body
    for err in body["errors"]:
        assert set(err) == {"loc", "msg", "type"}, err
    return [err["loc"] for err in body["errors"]]


# --- registration -------------------------------------------------------------------------


async def test_register_returns_the_public_user_and_never_a_secret(api: Api) -> None:
    body = registration(display_name="Ada Lovelace")
    r = await api.client.post(REGISTER, json=body)

    assert r.status_code == 201, r.text
    user = r.json()
    assert set(user) == USER_FIELDS
    assert uuid.UUID(user["id"])
    assert user["email"] == body["email"]
    assert user["display_name"] == "Ada Lovelace"
    created = datetime.fromisoformat(user["created_at"])
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert PASSWORD not in r.text
    assert "argon2" not in r.text
    assert "hash" not in r.text.lower()
    assert r.headers["cache-control"] == "no-store"


async def test_register_stores_the_email_lower_cased(api: Api) -> None:
    local = unique("Mixed.Case")
    r = await api.client.post(REGISTER, json=registration(email=f"{local}@Example.COM"))
    assert r.status_code == 201, r.text
    assert r.json()["email"] == f"{local}@example.com".lower()

    r = await api.client.post(
        LOGIN, json={"email": f"{local.upper()}@EXAMPLE.com", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text


async def test_register_strips_the_display_name(api: Api) -> None:
    r = await api.client.post(REGISTER, json=registration(display_name="  Grace Hopper  "))
    assert r.status_code == 201, r.text
    assert r.json()["display_name"] == "Grace Hopper"


@pytest.mark.parametrize(
    "variant",
    [str, str.upper, lambda e: e[0].upper() + e[1:], lambda e: e.replace("example", "ExAmPlE")],
    ids=["same", "upper", "capitalised", "mixed-domain"],
)
async def test_register_duplicate_email_is_409_in_any_letter_case(
    api: Api, resources: Resources, variant: Callable[[str], str]
) -> None:
    email = new_email()
    first = await api.client.post(REGISTER, json=registration(email=email))
    assert first.status_code == 201, first.text

    other_password = "another-long-password-123"
    r = await api.client.post(
        REGISTER,
        json=registration(email=variant(email), password=other_password, display_name="Mallory"),
    )

    assert_problem(r, 409, slug="conflict")
    assert await count_users(resources) == 1
    # the original account is untouched: its password still works, the intruder's does not
    ok = await api.client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    bad = await api.client.post(LOGIN, json={"email": email, "password": other_password})
    assert bad.status_code == 401, bad.text


@pytest.mark.parametrize(
    "password",
    ["", "s3cr3t!", "elevenchars", "x" * 129],
    ids=["empty", "short", "11-chars", "129-chars"],
)
async def test_register_refuses_a_weak_or_oversized_password(
    api: Api, resources: Resources, password: str
) -> None:
    r = await api.client.post(REGISTER, json=registration(password=password))

    body = assert_problem(r, 422, slug="validation-error")
    assert error_locs(body) == [["body", "password"]]
    if password:
        assert password not in r.text
    assert await count_users(resources) == 0


async def test_register_accepts_a_twelve_character_password(api: Api) -> None:
    r = await api.client.post(REGISTER, json=registration(password="twelve-chars"))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "email",
    ["", "not-an-email", "user@", "@example.com", "two words@example.com", "a@b@example.com"],
)
async def test_register_refuses_a_malformed_email(
    api: Api, resources: Resources, email: str
) -> None:
    r = await api.client.post(REGISTER, json=registration(email=email))

    body = assert_problem(r, 422, slug="validation-error")
    assert error_locs(body) == [["body", "email"]]
    assert PASSWORD not in r.text
    assert await count_users(resources) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"is_admin": True},
        {"is_active": False},
        {"id": "0190a6d2-0000-7000-8000-000000000000"},
        {"password_hash": "$argon2id$v=19$m=8,t=1,p=1$abc$def"},
    ],
    ids=["is_admin", "is_active", "id", "password_hash"],
)
async def test_register_refuses_unknown_fields(
    api: Api, resources: Resources, extra: dict[str, Any]
) -> None:
    body = registration(**extra)
    r = await api.client.post(REGISTER, json=body)

    problem = assert_problem(r, 422, slug="validation-error")
    [field] = extra
    assert ["body", field] in error_locs(problem)
    assert await count_users(resources) == 0
    # nothing was created: the same email registers cleanly afterwards
    ok = await api.client.post(REGISTER, json=registration(email=body["email"]))
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("display_name", ""), ("display_name", "   "), ("display_name", "x" * 101)],
    ids=["empty", "blank", "too-long"],
)
async def test_register_refuses_a_bad_display_name(
    api: Api, resources: Resources, field: str, value: str
) -> None:
    r = await api.client.post(REGISTER, json=registration(**{field: value}))
    body = assert_problem(r, 422, slug="validation-error")
    assert error_locs(body) == [["body", field]]
    assert await count_users(resources) == 0


async def test_register_with_missing_fields_lists_each(api: Api) -> None:
    r = await api.client.post(REGISTER, json={})
    body = assert_problem(r, 422, slug="validation-error")
    assert sorted(error_locs(body)) == [
        ["body", "display_name"],
        ["body", "email"],
        ["body", "password"],
    ]
    assert {e["type"] for e in body["errors"]} == {"missing"}


# --- sign-in ------------------------------------------------------------------------------


async def test_login_returns_a_bearer_token(
    api: Api, resources: Resources, settings: Settings
) -> None:
    body = registration()
    reg = await api.client.post(REGISTER, json=body)
    assert reg.status_code == 201, reg.text

    r = await api.client.post(LOGIN, json={"email": body["email"], "password": PASSWORD})

    assert r.status_code == 200, r.text
    tokens = r.json()
    assert set(tokens) >= TOKEN_FIELDS
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == settings.auth.access_token_ttl_seconds
    assert r.headers["cache-control"] == "no-store"
    assert PASSWORD not in r.text

    claims = resources.tokens.verify(tokens["access_token"])
    assert claims.subject == reg.json()["id"]
    assert claims.token_type == "access"
    raw = peek_claims(tokens["access_token"])
    assert {"sub", "jti", "typ", "iat", "exp", "auth_time", "iss", "aud"} <= set(raw)
    assert raw["exp"] - raw["iat"] == tokens["expires_in"]
    assert raw["iss"] == "storefront"
    assert raw["aud"] == "storefront-api"

    me = await api.client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["id"] == reg.json()["id"]


async def test_each_login_issues_a_distinct_token(api: Api) -> None:
    user = await api.user()
    r1 = await api.client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    r2 = await api.client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    assert r1.status_code == r2.status_code == 200
    jti1 = peek_claims(r1.json()["access_token"])["jti"]
    jti2 = peek_claims(r2.json()["access_token"])["jti"]
    assert jti1 != jti2


async def test_login_email_is_case_and_whitespace_insensitive(api: Api) -> None:
    user = await api.user()
    r = await api.client.post(
        LOGIN, json={"email": f"  {user.email.upper()} ", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text


async def test_login_password_is_case_sensitive(api: Api) -> None:
    user = await api.user()
    r = await api.client.post(LOGIN, json={"email": user.email, "password": PASSWORD.upper()})
    assert_problem(r, 401, slug="unauthenticated")


async def test_bad_credentials_look_the_same_whether_or_not_the_email_exists(api: Api) -> None:
    user = await api.user()

    wrong_password = await api.client.post(
        LOGIN, json={"email": user.email, "password": "not-the-password-at-all"}
    )
    unknown_email = await api.client.post(
        LOGIN, json={"email": new_email(), "password": "not-the-password-at-all"}
    )

    a = assert_problem(wrong_password, 401, slug="unauthenticated")
    b = assert_problem(unknown_email, 401, slug="unauthenticated")
    assert without_request_specific(a) == without_request_specific(b)
    assert set(a) == set(b)
    assert a["request_id"] != b["request_id"]
    assert wrong_password.headers.get("www-authenticate") == unknown_email.headers.get(
        "www-authenticate"
    )
    assert user.email not in wrong_password.text
    assert "access_token" not in wrong_password.text


async def test_a_deactivated_account_cannot_sign_in_and_looks_unknown(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    await set_user(resources, user.id, is_active=False)

    inactive = await api.client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    unknown = await api.client.post(LOGIN, json={"email": new_email(), "password": PASSWORD})

    a = assert_problem(inactive, 401, slug="unauthenticated")
    b = assert_problem(unknown, 401, slug="unauthenticated")
    assert without_request_specific(a) == without_request_specific(b)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "someone@example.com"},
        {"password": PASSWORD},
        {"email": "someone@example.com", "password": ""},
        {"email": "someone@example.com", "password": PASSWORD, "remember_me": True},
    ],
    ids=["no-password", "no-email", "empty-password", "unknown-field"],
)
async def test_login_validates_its_body(api: Api, body: dict[str, Any]) -> None:
    r = await api.client.post(LOGIN, json=body)
    assert_problem(r, 422, slug="validation-error")
    assert PASSWORD not in r.text


# --- OAuth2 password form -----------------------------------------------------------------


async def test_oauth2_token_endpoint_accepts_the_password_form(
    api: Api, resources: Resources, settings: Settings
) -> None:
    user = await api.user()

    r = await api.client.post(
        TOKEN, data={"grant_type": "password", "username": user.email, "password": PASSWORD}
    )

    assert r.status_code == 200, r.text
    tokens = r.json()
    assert set(tokens) >= TOKEN_FIELDS
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == settings.auth.access_token_ttl_seconds
    assert r.headers["cache-control"] == "no-store"
    assert resources.tokens.verify(tokens["access_token"]).subject == user.id
    me = await api.client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == user.email


async def test_oauth2_token_endpoint_grant_type_is_optional(api: Api) -> None:
    user = await api.user()
    r = await api.client.post(TOKEN, data={"username": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_oauth2_token_endpoint_refuses_bad_credentials(api: Api) -> None:
    user = await api.user()
    wrong = await api.client.post(
        TOKEN, data={"username": user.email, "password": "nope-nope-nope"}
    )
    unknown = await api.client.post(TOKEN, data={"username": new_email(), "password": "nope-nope"})
    a = assert_problem(wrong, 401, slug="unauthenticated")
    b = assert_problem(unknown, 401, slug="unauthenticated")
    assert without_request_specific(a) == without_request_specific(b)


@pytest.mark.parametrize(
    "form",
    [
        {"username": "someone@example.com"},
        {"password": PASSWORD},
        {"grant_type": "client_credentials", "username": "a@example.com", "password": PASSWORD},
    ],
    ids=["no-password", "no-username", "wrong-grant-type"],
)
async def test_oauth2_token_endpoint_validates_the_form(api: Api, form: dict[str, str]) -> None:
    r = await api.client.post(TOKEN, data=form)
    assert_problem(r, 422, slug="validation-error")
    assert PASSWORD not in r.text


async def test_oauth2_token_endpoint_wants_a_form_not_json(api: Api) -> None:
    user = await api.user()
    r = await api.client.post(TOKEN, json={"username": user.email, "password": PASSWORD})
    assert_problem(r, 422, slug="validation-error")


# --- the caller ---------------------------------------------------------------------------


async def test_me_returns_the_caller(api: Api) -> None:
    user = await api.user(display_name="Katherine Johnson")
    r = await api.client.get(ME, headers=user.auth)

    assert r.status_code == 200, r.text
    me = r.json()
    assert set(me) == USER_FIELDS
    assert me["id"] == user.id
    assert me["email"] == user.email
    assert me["display_name"] == "Katherine Johnson"
    assert r.headers["cache-control"] == "no-store"


async def test_me_without_a_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    r = await api.client.get(ME)
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", ""],
    ids=["basic", "other-scheme", "empty-bearer", "empty"],
)
async def test_me_ignores_non_bearer_credentials(api: Api, authorization: str) -> None:
    await api.user()
    r = await api.client.get(ME, headers={"Authorization": authorization})
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")


TokenMaker = Callable[[Resources, str], str]


def _other_key_same_kid(rt: Resources, uid: str) -> str:
    key = rt.security.keys.ring.signing_key
    assert key is not None
    return foreign_signed(access_claims(uid), kid=key.kid)


def _tampered(rt: Resources, uid: str) -> str:
    header, _payload, sig = rt.tokens.issue(uid).split(".")
    forged = b64url(json.dumps(access_claims(str(uuid.uuid4()))).encode())
    return f"{header}.{forged}.{sig}"


def _hs256_with_the_old_secret(_rt: Resources, uid: str) -> str:
    return signed_token(access_claims(uid), DEFAULT_JWT_SECRET)


BAD_TOKENS: dict[str, TokenMaker] = {
    "garbage": lambda _rt, _uid: "not-a-jwt",
    "three-garbage-parts": lambda _rt, _uid: "abc.def.ghi",
    "expired": lambda rt, uid: rt.tokens.issue(
        uid, now=datetime.now(UTC) - timedelta(seconds=rt.tokens.access_ttl_seconds + 60)
    ),
    "wrong-typ": lambda rt, uid: rt.tokens.issue(uid, token_type="refresh"),
    "mfa-typ": lambda rt, uid: rt.tokens.issue(uid, token_type="mfa"),
    "other-key-same-kid": _other_key_same_kid,
    "unknown-kid": lambda _rt, uid: foreign_signed(access_claims(uid), kid="not-a-known-kid"),
    "no-kid": lambda rt, uid: sign(rt, access_claims(uid), kid=None),
    "alg-none": lambda _rt, uid: unsigned_token(access_claims(uid), alg="none"),
    "alg-None-cased": lambda _rt, uid: unsigned_token(access_claims(uid), alg="None"),
    "unknown-alg": lambda _rt, uid: unsigned_token(
        access_claims(uid), alg="HS999", signature="c2ln"
    ),
    "hs256-keyed-with-the-public-key": lambda rt, uid: hmac_with_public_key(rt, access_claims(uid)),
    "hs256-old-secret": _hs256_with_the_old_secret,
    "tampered-payload": _tampered,
    "wrong-audience": lambda rt, uid: sign(rt, access_claims(uid, aud="other-api")),
    "wrong-issuer": lambda rt, uid: sign(rt, access_claims(uid, iss="evil")),
    "no-typ": lambda rt, uid: sign(rt, access_claims(uid, typ=None)),
    "no-jti": lambda rt, uid: sign(rt, access_claims(uid, jti=None)),
    "no-exp": lambda rt, uid: sign(rt, access_claims(uid, exp=None)),
    "sub-not-uuid": lambda rt, _uid: sign(rt, access_claims("admin")),
    "sub-unknown-user": lambda rt, _uid: sign(rt, access_claims(str(uuid.uuid4()))),
}


async def test_a_hand_built_token_is_accepted_when_everything_is_right(
    api: Api, resources: Resources
) -> None:
    """Control for the refusals below: the hand-built tokens differ only in what they test."""
    user = await api.user()
    token = sign(resources, access_claims(user.id))
    r = await api.client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == user.id


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_me_refuses_an_invalid_token(api: Api, resources: Resources, case: str) -> None:
    user = await api.user()
    token = BAD_TOKENS[case](resources, user.id)

    r = await api.client.get(ME, headers={"Authorization": f"Bearer {token}"})

    body = assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert user.email not in r.text
    assert token not in r.text
    assert "signature" not in body["detail"].lower()  # no library error text leaks


async def test_a_deactivated_users_token_stops_working(api: Api, resources: Resources) -> None:
    user = await api.user()
    assert (await api.client.get(ME, headers=user.auth)).status_code == 200
    await set_user(resources, user.id, is_active=False)

    r = await api.client.get(ME, headers=user.auth)
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# --- profile updates ----------------------------------------------------------------------


async def test_patch_me_changes_the_display_name(api: Api) -> None:
    user = await api.user(display_name="Before")
    before = (await api.client.get(ME, headers=user.auth)).json()

    r = await api.client.patch(ME, json={"display_name": "  After  "}, headers=user.auth)

    assert r.status_code == 200, r.text
    assert r.json() == {**before, "display_name": "After"}
    assert r.headers["cache-control"] == "no-store"
    again = await api.client.get(ME, headers=user.auth)
    assert again.json() == {**before, "display_name": "After"}


async def test_patch_me_with_an_empty_body_changes_nothing(api: Api) -> None:
    user = await api.user(display_name="Stays")
    before = (await api.client.get(ME, headers=user.auth)).json()
    r = await api.client.patch(ME, json={}, headers=user.auth)
    assert r.status_code == 200, r.text
    assert r.json() == before


async def test_patch_me_touches_only_the_caller(api: Api) -> None:
    alice = await api.user(display_name="Alice")
    bob = await api.user(display_name="Bob")
    r = await api.client.patch(ME, json={"display_name": "Alice 2"}, headers=alice.auth)
    assert r.status_code == 200, r.text
    assert (await api.client.get(ME, headers=bob.auth)).json()["display_name"] == "Bob"


@pytest.mark.parametrize(
    "patch",
    [
        {"email": "someone-else@example.com"},
        {"id": "0190a6d2-0000-7000-8000-000000000000"},
        {"is_admin": True},
        {"is_active": False},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"password": "a-brand-new-password"},
        {"display_name": "Sneaky", "is_admin": True},
        {"display_name": "Sneaky", "email": "sneaky@example.com"},
    ],
    ids=[
        "email",
        "id",
        "is_admin",
        "is_active",
        "created_at",
        "password",
        "name+is_admin",
        "name+email",
    ],
)
async def test_patch_me_refuses_read_only_and_unknown_fields_and_changes_nothing(
    api: Api, resources: Resources, patch: dict[str, Any]
) -> None:
    user = await api.user(display_name="Original")
    before = (await api.client.get(ME, headers=user.auth)).json()

    r = await api.client.patch(ME, json=patch, headers=user.auth)

    body = assert_problem(r, 422, slug="validation-error")
    offending = {k for k in patch if k != "display_name"}
    assert {loc[-1] for loc in error_locs(body)} == offending
    assert (await api.client.get(ME, headers=user.auth)).json() == before
    row = await user_row(resources, user.id)
    assert row.is_admin is False
    assert row.is_active is True
    assert row.email_index == resources.vault.blind_index(user.email)
    login = await api.client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200, login.text


@pytest.mark.parametrize(
    "display_name",
    [None, "", "    ", "x" * 101, 42, ["Ada"]],
    ids=["null", "empty", "blank", "too-long", "number", "list"],
)
async def test_patch_me_refuses_an_invalid_display_name(api: Api, display_name: Any) -> None:
    user = await api.user(display_name="Original")

    r = await api.client.patch(ME, json={"display_name": display_name}, headers=user.auth)

    body = assert_problem(r, 422, slug="validation-error")
    assert ["body", "display_name"] in error_locs(body)
    assert (await api.client.get(ME, headers=user.auth)).json()["display_name"] == "Original"


async def test_patch_me_accepts_a_hundred_character_name(api: Api) -> None:
    user = await api.user()
    r = await api.client.patch(ME, json={"display_name": "x" * 100}, headers=user.auth)
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "x" * 100


async def test_patch_me_needs_a_token(api: Api) -> None:
    r = await api.client.patch(ME, json={"display_name": "Anon"})
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
