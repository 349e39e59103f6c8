"""Shops over HTTP: creation, reading, and who may manage a shop's members."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storefront.resources import Resources
from storefront.shops.models import Membership
from tests.support.factories import V1, Api, UserHandle, shop_with_staff, unique
from tests.support.identity import promote_to_admin, set_user
from tests.support.problems import assert_problem

SHOPS = f"{V1}/shops"
SHOP_FIELDS = {"id", "name", "slug", "created_at"}
MEMBER_FIELDS = {"shop_id", "user_id", "role", "created_at"}


def member_url(shop: dict[str, Any] | str, user: UserHandle | str) -> str:
    shop_id = shop if isinstance(shop, str) else shop["id"]
    user_id = user if isinstance(user, str) else user.id
    return f"{SHOPS}/{shop_id}/members/{user_id}"


def new_slug() -> str:
    return unique("shop").lower()


async def roles(resources: Resources, shop: dict[str, Any]) -> dict[str, str]:
    """The shop's memberships straight from the database: user id -> role."""
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(Membership.user_id, Membership.role).where(
                Membership.shop_id == uuid.UUID(shop["id"])
            )
        )
        return {str(user_id): str(role.value) for user_id, role in rows}


async def put_role(
    api: Api,
    actor: UserHandle,
    shop: dict[str, Any] | str,
    user: UserHandle | str,
    role: str,
) -> Any:
    return await api.client.put(member_url(shop, user), json={"role": role}, headers=actor.auth)


async def admin(api: Api, resources: Resources) -> UserHandle:
    user = await api.user(display_name="Platform Admin")
    await promote_to_admin(resources, user)
    return user


# --- creating and reading -----------------------------------------------------------------


async def test_create_shop_returns_it_and_the_caller_becomes_owner(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    slug = new_slug()

    r = await api.client.post(
        SHOPS, json={"name": "  Corner Books  ", "slug": slug}, headers=owner.auth
    )

    assert r.status_code == 201, r.text
    shop = r.json()
    assert set(shop) == SHOP_FIELDS
    assert uuid.UUID(shop["id"])
    assert shop["name"] == "Corner Books"
    assert shop["slug"] == slug
    assert abs(datetime.now(UTC) - datetime.fromisoformat(shop["created_at"])) < timedelta(
        minutes=5
    )
    assert r.headers["location"] == f"{SHOPS}/{shop['id']}"
    assert await roles(resources, shop) == {owner.id: "owner"}

    # the owner can manage members
    staff = await api.user()
    r = await put_role(api, owner, shop, staff, "staff")
    assert r.status_code == 200, r.text


async def test_created_shop_is_readable_by_anyone_at_its_location(api: Api) -> None:
    owner = await api.user()
    created = await api.client.post(
        SHOPS, json={"name": "Read Me", "slug": new_slug()}, headers=owner.auth
    )
    assert created.status_code == 201, created.text

    r = await api.client.get(created.headers["location"])

    assert r.status_code == 200, r.text
    assert r.json() == created.json()


async def test_a_user_can_own_several_shops(api: Api, resources: Resources) -> None:
    owner = await api.user()
    a = await api.shop(owner)
    b = await api.shop(owner)
    assert a["id"] != b["id"]
    assert await roles(resources, a) == {owner.id: "owner"}
    assert await roles(resources, b) == {owner.id: "owner"}


async def test_duplicate_slug_is_409_and_creates_nothing(api: Api, resources: Resources) -> None:
    first_owner = await api.user()
    second_owner = await api.user()
    shop = await api.shop(first_owner, name="First")

    r = await api.client.post(
        SHOPS, json={"name": "Second", "slug": shop["slug"]}, headers=second_owner.auth
    )

    body = assert_problem(r, 409, slug="conflict")
    assert shop["slug"] in body["detail"]
    assert (await api.client.get(f"{SHOPS}/{shop['id']}")).json()["name"] == "First"
    assert await roles(resources, shop) == {first_owner.id: "owner"}


@pytest.mark.parametrize(
    "slug",
    [
        "ab",
        "Upper-Case",
        "under_score",
        "-leading",
        "trailing-",
        "has space",
        "dots.in.it",
        "ünïcode",
        "x" * 64,
        "",
    ],
)
async def test_bad_slug_is_422(api: Api, slug: str) -> None:
    owner = await api.user()
    r = await api.client.post(SHOPS, json={"name": "Shop", "slug": slug}, headers=owner.auth)
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "slug"]]


@pytest.mark.parametrize("slug", ["abc", "a-b", "a--b", "0shop9", "x" * 63])
async def test_good_slugs_are_accepted(api: Api, slug: str) -> None:
    owner = await api.user()
    r = await api.client.post(SHOPS, json={"name": "Shop", "slug": slug}, headers=owner.auth)
    assert r.status_code == 201, r.text
    assert r.json()["slug"] == slug


@pytest.mark.parametrize(
    "body",
    [
        {"slug": "no-name"},
        {"name": "No slug"},
        {"name": "   ", "slug": "blank-name"},
        {"name": "x" * 121, "slug": "long-name"},
        {
            "name": "Extra",
            "slug": "extra-field",
            "owner_id": "0190a6d2-0000-7000-8000-000000000000",
        },
        {"name": "Extra", "slug": "extra-id", "id": "0190a6d2-0000-7000-8000-000000000000"},
    ],
    ids=["no-name", "no-slug", "blank-name", "long-name", "owner_id", "id"],
)
async def test_invalid_shop_body_is_422_and_creates_nothing(api: Api, body: dict[str, Any]) -> None:
    owner = await api.user()
    r = await api.client.post(SHOPS, json=body, headers=owner.auth)
    assert_problem(r, 422, slug="validation-error")
    if "slug" in body:  # the slug is still free
        retry = await api.client.post(
            SHOPS, json={"name": "Retry", "slug": body["slug"]}, headers=owner.auth
        )
        assert retry.status_code == 201, retry.text


async def test_create_shop_anonymously_is_401(api: Api) -> None:
    slug = new_slug()
    r = await api.client.post(SHOPS, json={"name": "Anon", "slug": slug})
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    # nothing was created under that slug
    owner = await api.user()
    retry = await api.client.post(SHOPS, json={"name": "Mine", "slug": slug}, headers=owner.auth)
    assert retry.status_code == 201, retry.text


async def test_create_shop_with_a_bad_token_is_401(api: Api) -> None:
    r = await api.client.post(
        SHOPS,
        json={"name": "Anon", "slug": new_slug()},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_get_shop_is_public(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner, name="Public Shop")

    r = await api.client.get(f"{SHOPS}/{shop['id']}")

    assert r.status_code == 200, r.text
    assert r.json() == shop
    assert r.json()["name"] == "Public Shop"


async def test_get_unknown_shop_is_404(api: Api) -> None:
    missing = uuid.uuid4()
    r = await api.client.get(f"{SHOPS}/{missing}")
    assert_problem(r, 404, slug="not-found")


@pytest.mark.parametrize("shop_id", ["not-a-uuid", "123", "0190a6d2-0000-7000-8000"])
async def test_get_shop_with_a_malformed_id_is_422(api: Api, shop_id: str) -> None:
    r = await api.client.get(f"{SHOPS}/{shop_id}")
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["path", "shop_id"]]


# --- members ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "owner"])
async def test_owner_adds_a_member(api: Api, resources: Resources, role: str) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    user = await api.user()

    r = await put_role(api, owner, shop, user, role)

    assert r.status_code == 200, r.text
    member = r.json()
    assert set(member) == MEMBER_FIELDS
    assert member["shop_id"] == shop["id"]
    assert member["user_id"] == user.id
    assert member["role"] == role
    assert await roles(resources, shop) == {owner.id: "owner", user.id: role}


async def test_put_member_is_idempotent(api: Api, resources: Resources) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    user = await api.user()
    first = await put_role(api, owner, shop, user, "staff")
    second = await put_role(api, owner, shop, user, "staff")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert await roles(resources, shop) == {owner.id: "owner", user.id: "staff"}


async def test_owner_changes_a_members_role(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)

    up = await put_role(api, owner, shop, staff, "owner")
    assert up.status_code == 200, up.text
    assert up.json()["role"] == "owner"
    down = await put_role(api, owner, shop, staff, "staff")
    assert down.status_code == 200, down.text
    assert down.json()["role"] == "staff"
    assert down.json()["created_at"] == up.json()["created_at"]  # same membership, updated
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


@pytest.mark.parametrize("role", ["admin", "OWNER", "", None, 1])
async def test_put_member_with_an_invalid_role_is_422(
    api: Api, resources: Resources, role: Any
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    user = await api.user()
    r = await api.client.put(member_url(shop, user), json={"role": role}, headers=owner.auth)
    body = assert_problem(r, 422, slug="validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "role"]]
    assert await roles(resources, shop) == {owner.id: "owner"}


async def test_put_member_with_unknown_fields_is_422(api: Api, resources: Resources) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    user = await api.user()
    r = await api.client.put(
        member_url(shop, user), json={"role": "staff", "is_admin": True}, headers=owner.auth
    )
    assert_problem(r, 422, slug="validation-error")
    assert await roles(resources, shop) == {owner.id: "owner"}


async def test_staff_cannot_manage_members(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    newcomer = await api.user()

    add = await put_role(api, staff, shop, newcomer, "staff")
    promote_self = await put_role(api, staff, shop, staff, "owner")
    demote_owner = await put_role(api, staff, shop, owner, "staff")
    remove_owner = await api.client.delete(member_url(shop, owner), headers=staff.auth)

    for r in (add, promote_self, demote_owner, remove_owner):
        assert_problem(r, 403, slug="forbidden")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_a_stranger_cannot_manage_members(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    stranger = await api.user()

    join = await put_role(api, stranger, shop, stranger, "owner")
    demote = await put_role(api, stranger, shop, owner, "staff")
    remove = await api.client.delete(member_url(shop, staff), headers=stranger.auth)

    for r in (join, demote, remove):
        assert_problem(r, 403, slug="forbidden")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_an_owner_of_another_shop_cannot_manage_this_one(
    api: Api, resources: Resources
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    other_owner = await api.user()
    await api.shop(other_owner)

    r = await put_role(api, other_owner, shop, staff, "owner")
    assert_problem(r, 403, slug="forbidden")
    r = await api.client.delete(member_url(shop, staff), headers=other_owner.auth)
    assert_problem(r, 403, slug="forbidden")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_member_routes_need_a_token(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    put = await api.client.put(member_url(shop, staff), json={"role": "owner"})
    delete = await api.client.delete(member_url(shop, staff))
    for r in (put, delete):
        assert_problem(r, 401, slug="unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_adding_an_unknown_user_is_404(api: Api, resources: Resources) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    r = await put_role(api, owner, shop, str(uuid.uuid4()), "staff")
    body = assert_problem(r, 404, slug="not-found")
    assert "user" in body["detail"].lower()
    assert await roles(resources, shop) == {owner.id: "owner"}


async def test_adding_a_deactivated_user_is_404(api: Api, resources: Resources) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    gone = await api.user()
    await set_user(resources, gone.id, is_active=False)
    r = await put_role(api, owner, shop, gone, "staff")
    assert_problem(r, 404, slug="not-found")
    assert await roles(resources, shop) == {owner.id: "owner"}


async def test_member_routes_on_an_unknown_shop_are_404(api: Api) -> None:
    user = await api.user()
    other = await api.user()
    missing = str(uuid.uuid4())
    put = await put_role(api, user, missing, other, "staff")
    body = assert_problem(put, 404, slug="not-found")
    assert "shop" in body["detail"].lower()
    delete = await api.client.delete(member_url(missing, other), headers=user.auth)
    assert_problem(delete, 404, slug="not-found")


@pytest.mark.parametrize(
    ("shop_id", "user_id", "bad"),
    [("nope", str(uuid.uuid4()), "shop_id"), (None, "nope", "user_id")],
    ids=["shop_id", "user_id"],
)
async def test_member_routes_with_malformed_ids_are_422(
    api: Api, shop_id: str | None, user_id: str, bad: str
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    url = member_url(shop_id or shop["id"], user_id)
    put = await api.client.put(url, json={"role": "staff"}, headers=owner.auth)
    delete = await api.client.delete(url, headers=owner.auth)
    for r in (put, delete):
        body = assert_problem(r, 422, slug="validation-error")
        assert [e["loc"] for e in body["errors"]] == [["path", bad]]


async def test_the_last_owner_cannot_be_demoted_or_removed(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)

    demote = await put_role(api, owner, shop, owner, "staff")
    body = assert_problem(demote, 409, slug="conflict")
    assert "owner" in body["detail"].lower()
    remove = await api.client.delete(member_url(shop, owner), headers=owner.auth)
    assert_problem(remove, 409, slug="conflict")

    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}
    # still an owner in practice, too
    assert (await put_role(api, owner, shop, staff, "staff")).status_code == 200


async def test_a_sole_owner_setting_themselves_owner_again_is_fine(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    r = await put_role(api, owner, shop, owner, "owner")
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "owner"
    assert await roles(resources, shop) == {owner.id: "owner"}


async def test_promote_a_second_owner_then_the_first_can_step_down(
    api: Api, resources: Resources
) -> None:
    first, second, shop = await shop_with_staff(api)

    assert (await put_role(api, first, shop, second, "owner")).status_code == 200
    r = await put_role(api, first, shop, first, "staff")
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "staff"
    assert await roles(resources, shop) == {first.id: "staff", second.id: "owner"}

    # the roles now hold in both directions
    assert_problem(await put_role(api, first, shop, first, "owner"), 403, slug="forbidden")
    assert_problem(await put_role(api, second, shop, second, "staff"), 409, slug="conflict")
    r = await api.client.delete(member_url(shop, first), headers=second.auth)
    assert r.status_code == 204, r.text
    assert await roles(resources, shop) == {second.id: "owner"}


async def test_an_owner_can_remove_another_owner_while_one_remains(
    api: Api, resources: Resources
) -> None:
    first, second, shop = await shop_with_staff(api)
    await api.add_member(first, shop, second, "owner")

    r = await api.client.delete(member_url(shop, second), headers=first.auth)
    assert r.status_code == 204, r.text
    assert await roles(resources, shop) == {first.id: "owner"}
    # and now the last one is protected
    assert_problem(
        await api.client.delete(member_url(shop, first), headers=first.auth), 409, slug="conflict"
    )


async def test_owners_demoting_each_other_at_once_leave_an_owner(
    api: Api, resources: Resources
) -> None:
    """Two owners each demote the other concurrently: at most one of them may succeed."""
    for _ in range(3):
        first, second, shop = await shop_with_staff(api)
        await api.add_member(first, shop, second, "owner")

        a, b = await asyncio.gather(
            put_role(api, first, shop, second, "staff"),
            put_role(api, second, shop, first, "staff"),
        )

        # one wins; the other is refused, as no longer an owner (403) or the last one (409)
        statuses = sorted([a.status_code, b.status_code])
        assert statuses in ([200, 403], [200, 409]), (a.text, b.text)
        assert sorted((await roles(resources, shop)).values()) == ["owner", "staff"]


async def test_owners_removing_each_other_at_once_leave_an_owner(
    api: Api, resources: Resources
) -> None:
    for _ in range(3):
        first, second, shop = await shop_with_staff(api)
        await api.add_member(first, shop, second, "owner")

        a, b = await asyncio.gather(
            api.client.delete(member_url(shop, second), headers=first.auth),
            api.client.delete(member_url(shop, first), headers=second.auth),
        )

        statuses = sorted([a.status_code, b.status_code])
        assert statuses in ([204, 403], [204, 409]), (a.text, b.text)
        assert list((await roles(resources, shop)).values()) == ["owner"]


async def test_owner_removes_a_member(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)

    r = await api.client.delete(member_url(shop, staff), headers=owner.auth)

    assert r.status_code == 204, r.text
    assert r.content == b""
    assert await roles(resources, shop) == {owner.id: "owner"}
    # gone: removing again is 404, and the former member has no say any more
    again = await api.client.delete(member_url(shop, staff), headers=owner.auth)
    assert_problem(again, 404, slug="not-found")
    newcomer = await api.user()
    assert_problem(await put_role(api, staff, shop, newcomer, "staff"), 403, slug="forbidden")


async def test_a_member_may_not_remove_themselves_unless_owner(
    api: Api, resources: Resources
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    r = await api.client.delete(member_url(shop, staff), headers=staff.auth)
    assert_problem(r, 403, slug="forbidden")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_removing_a_non_member_is_404(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    outsider = await api.user()
    r = await api.client.delete(member_url(shop, outsider), headers=owner.auth)
    assert_problem(r, 404, slug="not-found")
    r = await api.client.delete(member_url(shop, str(uuid.uuid4())), headers=owner.auth)
    assert_problem(r, 404, slug="not-found")


async def test_membership_is_per_shop(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    other = await api.shop(owner)

    r = await api.client.delete(member_url(other, staff), headers=owner.auth)

    assert_problem(r, 404, slug="not-found")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}
    assert await roles(resources, other) == {owner.id: "owner"}


# --- platform admins ----------------------------------------------------------------------


async def test_a_platform_admin_manages_any_shop(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    root = await admin(api, resources)
    newcomer = await api.user()

    added = await put_role(api, root, shop, newcomer, "staff")
    assert added.status_code == 200, added.text
    promoted = await put_role(api, root, shop, staff, "owner")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "owner"
    removed = await api.client.delete(member_url(shop, owner), headers=root.auth)
    assert removed.status_code == 204, removed.text

    # the admin acted without becoming a member
    assert await roles(resources, shop) == {staff.id: "owner", newcomer.id: "staff"}


async def test_a_platform_admin_still_cannot_leave_a_shop_without_an_owner(
    api: Api, resources: Resources
) -> None:
    owner, _staff, shop = await shop_with_staff(api)
    root = await admin(api, resources)
    assert_problem(await put_role(api, root, shop, owner, "staff"), 409, slug="conflict")
    r = await api.client.delete(member_url(shop, owner), headers=root.auth)
    assert_problem(r, 409, slug="conflict")
    assert (await roles(resources, shop))[owner.id] == "owner"


async def test_admin_rights_end_when_the_flag_is_cleared(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    root = await admin(api, resources)
    assert (await put_role(api, root, shop, staff, "staff")).status_code == 200

    await set_user(resources, root.id, is_admin=False)

    r = await put_role(api, root, shop, staff, "owner")
    assert_problem(r, 403, slug="forbidden")
    assert await roles(resources, shop) == {owner.id: "owner", staff.id: "staff"}


async def test_a_platform_admin_gets_404_for_unknown_shops_and_users(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    root = await admin(api, resources)
    assert_problem(
        await put_role(api, root, str(uuid.uuid4()), owner, "staff"), 404, slug="not-found"
    )
    assert_problem(
        await put_role(api, root, shop, str(uuid.uuid4()), "staff"), 404, slug="not-found"
    )
