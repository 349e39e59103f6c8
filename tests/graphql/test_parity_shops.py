"""REST parity, shops: opening a shop and managing its members through GraphQL, with REST's
rules (a unique slug, owners only for members, a shop the caller may not manage is
``forbidden`` as REST's 403, since a shop's existence is public)."""

from __future__ import annotations

import uuid

from tests.graphql.support import codes, data, gql
from tests.support.factories import V1, Api, shop_with_staff, unique

CREATE = """
mutation Create($name: String!, $slug: String!) {
  createShop(name: $name, slug: $slug) { id name slug createdAt }
}
"""
SET = """
mutation Set($shop: UUID!, $user: UUID!, $role: Role!) {
  setShopMember(shopId: $shop, userId: $user, role: $role) { shopId userId role createdAt }
}
"""
REMOVE = """
mutation Remove($shop: UUID!, $user: UUID!) { removeShopMember(shopId: $shop, userId: $user) }
"""
MINE = "{ viewer { memberships { nodes { role shop { id slug } } } } }"


async def test_create_shop_as_rest_does(api: Api) -> None:
    user = await api.user()
    slug = unique("gql-shop").lower()
    variables = {"name": "GraphQL Shop", "slug": slug}
    assert codes(await gql(api.client, CREATE, variables)) == ["unauthenticated"]
    created = data(await gql(api.client, CREATE, variables, user=user))["createShop"]
    assert created["slug"] == slug
    rest = await api.client.get(f"{V1}/shops/{created['id']}")
    assert rest.json()["name"] == "GraphQL Shop"
    mine = data(await gql(api.client, MINE, user=user))["viewer"]["memberships"]["nodes"]
    assert mine == [{"role": "OWNER", "shop": {"id": created["id"], "slug": slug}}]
    # the same slug again: REST's conflict; a bad slug: the REST schema's validation
    assert codes(await gql(api.client, CREATE, variables, user=user)) == ["conflict"]
    bad = await gql(api.client, CREATE, {"name": "x", "slug": "No Spaces"}, user=user)
    assert codes(bad) == ["validation-error"]


async def test_members_owner_only_matrix(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    newcomer = await api.user()
    variables = {"shop": shop["id"], "user": newcomer.id, "role": "STAFF"}

    assert codes(await gql(api.client, SET, variables)) == ["unauthenticated"]
    for caller in (staff, customer):
        assert codes(await gql(api.client, SET, variables, user=caller)) == ["forbidden"]
    unknown = {**variables, "shop": str(uuid.uuid4())}
    assert codes(await gql(api.client, SET, unknown, user=owner)) == ["not-found"]

    member = data(await gql(api.client, SET, variables, user=owner))["setShopMember"]
    assert member["role"] == "STAFF"
    assert member["userId"] == newcomer.id
    theirs = data(await gql(api.client, MINE, user=newcomer))["viewer"]["memberships"]["nodes"]
    assert theirs[0]["shop"]["id"] == shop["id"]

    removal = {"shop": shop["id"], "user": newcomer.id}
    assert codes(await gql(api.client, REMOVE, removal, user=staff)) == ["forbidden"]
    assert data(await gql(api.client, REMOVE, removal, user=owner))["removeShopMember"] is True
    theirs = data(await gql(api.client, MINE, user=newcomer))["viewer"]["memberships"]["nodes"]
    assert theirs == []
    # REST's rule: removing someone who is not a member is not found
    assert codes(await gql(api.client, REMOVE, removal, user=owner)) == ["not-found"]
