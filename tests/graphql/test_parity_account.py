"""REST parity, the caller's account through GraphQL: profile, sessions (list, revoke, sign
out), password change, TOTP enrolment, confirmation and removal, through the identity
services REST's routes call (recent sign-in, throttles and security events included)."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from storefront.resources import Resources
from tests.graphql.support import codes, data, gql
from tests.support.factories import PASSWORD, V1, Api, UserHandle
from tests.support.privacy import ME, stale_token

pytestmark = pytest.mark.users_over_http

UPDATE = """
mutation($name: String) { updateViewer(displayName: $name) { id email displayName createdAt } }
"""
SESSIONS = "{ viewer { sessions { id current userAgent ipAddress createdAt lastUsedAt } } }"
REVOKE = "mutation($id: UUID!) { revokeSession(id: $id) }"
SIGN_OUT = "mutation { signOut }"
CHANGE = """
mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new)
}
"""
ENROL = "mutation { startTotpEnrolment { secret otpauthUri } }"
CONFIRM = "mutation($code: String!) { confirmTotp(code: $code) }"
DISABLE = "mutation($code: String!) { disableTotp(code: $code) }"


async def _sign_in(api: Api, user: UserHandle) -> dict[str, Any]:
    r = await api.client.post(f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_update_viewer_as_patch_users_me(api: Api) -> None:
    user = await api.user()
    assert codes(await gql(api.client, UPDATE, {"name": "Ada"})) == ["unauthenticated"]
    profile = data(await gql(api.client, UPDATE, {"name": "Ada L."}, user=user))["updateViewer"]
    assert profile["displayName"] == "Ada L."
    assert profile["email"] == user.email
    assert (await api.client.get(ME, headers=user.auth)).json()["display_name"] == "Ada L."
    # REST's rule: null is refused (omitted leaves it as it is)
    assert codes(await gql(api.client, UPDATE, {"name": None}, user=user)) == ["validation-error"]
    left = data(await gql(api.client, "mutation { updateViewer { displayName } }", user=user))
    assert left["updateViewer"]["displayName"] == "Ada L."


async def test_sessions_listed_revoked_and_signed_out(api: Api) -> None:
    user, other = await api.user(), await api.user()
    second = await _sign_in(api, user)
    assert codes(await gql(api.client, SESSIONS)) == ["unauthenticated"]
    sessions = data(await gql(api.client, SESSIONS, user=user))["viewer"]["sessions"]
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    elsewhere = next(s for s in sessions if not s["current"])
    # another user's session: not found, as REST
    assert codes(await gql(api.client, REVOKE, {"id": elsewhere["id"]}, user=other)) == [
        "not-found"
    ]
    assert data(await gql(api.client, REVOKE, {"id": elsewhere["id"]}, user=user))
    refreshed = await api.client.post(
        f"{V1}/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert len(data(await gql(api.client, SESSIONS, user=user))["viewer"]["sessions"]) == 1

    assert data(await gql(api.client, SIGN_OUT, user=user))["signOut"] is True
    assert (await api.client.get(ME, headers=user.auth)).status_code == 401


async def test_change_password_as_rest(api: Api, resources: Resources) -> None:
    user = await api.user()
    new = "a-brand-new-passphrase-42"
    variables = {"current": PASSWORD, "new": new}
    stale = UserHandle(user.id, user.email, stale_token(resources, user.token))
    assert codes(await gql(api.client, CHANGE, variables, user=stale)) == ["recent-auth-required"]
    wrong = {"current": "not-my-password-at-all", "new": new}
    assert codes(await gql(api.client, CHANGE, wrong, user=user)) == ["forbidden"]
    weak = {"current": PASSWORD, "new": "1qaz2wsx3edc"}
    assert codes(await gql(api.client, CHANGE, weak, user=user)) == ["weak-password"]
    assert data(await gql(api.client, CHANGE, variables, user=user))["changePassword"] is True
    r = await api.client.post(f"{V1}/auth/login", json={"email": user.email, "password": new})
    assert r.status_code == 200, r.text


async def test_totp_enrolled_confirmed_and_removed(api: Api, resources: Resources) -> None:
    user = await api.user()
    stale = UserHandle(user.id, user.email, stale_token(resources, user.token))
    assert codes(await gql(api.client, ENROL, user=stale)) == ["recent-auth-required"]
    enrolment = data(await gql(api.client, ENROL, user=user))["startTotpEnrolment"]
    assert enrolment["otpauthUri"].startswith("otpauth://totp/")
    assert codes(await gql(api.client, CONFIRM, {"code": "000000"}, user=user)) != []
    code = pyotp.TOTP(enrolment["secret"]).now()
    recovery = data(await gql(api.client, CONFIRM, {"code": code}, user=user))["confirmTotp"]
    assert len(set(recovery)) == 10
    # signing in now asks for the second factor
    login = await api.client.post(
        f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert login.json()["mfa_required"] is True
    assert data(await gql(api.client, DISABLE, {"code": recovery[0]}, user=user))["disableTotp"]
    assert codes(await gql(api.client, DISABLE, {"code": recovery[1]}, user=user)) == ["not-found"]
    login = await api.client.post(
        f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert "access_token" in login.json()
