"""Personal data at rest: sealed with per-user data keys, bound to its row, found by a blind
index, shredded with the key (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storefront.resources import Resources
from storefront.settings import Settings
from storefront.vault import (
    DataKeyDestroyed,
    LocalKeyProvider,
    PersonalDataVault,
    SealedValueError,
)
from storefront.vault.config import build_vault
from tests.support.factories import PASSWORD, V1, Api, UserHandle, shop_with_staff
from tests.support.problems import assert_problem

EMAIL = "Ada.Lovelace@Example.COM"
NAME = "Ada Byron Lovelace"
ADDRESS = {
    "name": "Augusta Ada King",
    "line1": "12 Analytical Row",
    "line2": "Difference Engine Wing",
    "city": "Marylebone",
    "postal_code": "NW1 6XE",
    "country": "GB",
    "phone": "+44 20 7946 0123",
}


async def raw_rows(resources: Resources, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows as the database holds them (plain SQL, no model, no vault)."""
    async with resources.engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def _rows_of(
    resources: Resources, table: str, column: str, value: str
) -> list[dict[str, Any]]:
    if resources.engine.dialect.name == "sqlite":
        value = uuid.UUID(value).hex
    return await raw_rows(resources, f"SELECT * FROM {table} WHERE {column} = :v", v=value)  # noqa: S608


async def _order(
    api: Api, customer: UserHandle, shop: dict[str, Any], product: dict[str, Any]
) -> dict[str, Any]:
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json={
            "lines": [{"product_id": product["id"], "quantity": 1}],
            "shipping_address": ADDRESS,
        },
        headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _world(api: Api) -> tuple[UserHandle, UserHandle, dict[str, Any], dict[str, Any]]:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=100)
    customer = await api.user(EMAIL, display_name=NAME)
    return customer, staff, shop, product


def _plaintexts() -> list[str]:
    values = [EMAIL, EMAIL.lower(), NAME, *(v for v in ADDRESS.values() if len(v) > 2)]
    return [v.lower() for v in values] + ["lovelace", "7946"]


def _assert_no_plaintext(rows: list[dict[str, Any]]) -> None:
    dump = json.dumps(rows, default=str).lower()
    for value in _plaintexts():
        assert value.lower() not in dump, value


async def test_raw_rows_hold_no_plaintext_personal_data(api: Api, resources: Resources) -> None:
    customer, staff, shop, product = await _world(api)
    order = await _order(api, customer, shop, product)
    assert order["shipping_address"] == ADDRESS
    assert order["customer_erased"] is False

    users = await _rows_of(resources, "users", "id", customer.id)
    orders = await _rows_of(resources, "orders", "id", order["id"])
    keys = await _rows_of(resources, "data_keys", "subject_id", customer.id)
    assert len(users) == len(orders) == len(keys) == 1
    _assert_no_plaintext(users + orders + keys)
    # every table, not only the ones we expect personal data in
    everything: list[dict[str, Any]] = []
    for table in ("users", "orders", "order_lines", "data_keys", "auth_sessions"):
        everything += await raw_rows(resources, f"SELECT * FROM {table}")  # noqa: S608
    _assert_no_plaintext(everything)

    user = users[0]
    assert "email" not in user
    assert "display_name" not in user
    assert user["email_sealed"].startswith("pd1.1.")
    assert user["display_name_sealed"].startswith("pd1.1.")
    assert orders[0]["shipping_address_sealed"].startswith("pd1.1.")
    assert user["email_index"] == resources.vault.blind_index(EMAIL)
    assert len(user["email_index"]) == 64
    key = keys[0]
    assert key["master_version"] == resources.vault.provider.current_version
    assert key["destroyed_at"] is None
    assert len(base64.b64decode(key["wrapped_key"])) == 12 + 32 + 16  # nonce, key, tag

    # and the API still reads it all back
    me = await api.client.get(f"{V1}/users/me", headers=customer.auth)
    assert me.json()["email"] == EMAIL.lower()
    assert me.json()["display_name"] == NAME
    got = await api.client.get(f"{V1}/shops/{shop['id']}/orders/{order['id']}", headers=staff.auth)
    assert got.json()["shipping_address"] == ADDRESS


async def test_a_ciphertext_moved_to_another_row_or_column_does_not_decrypt(
    api: Api, resources: Resources
) -> None:
    customer, _staff, shop, product = await _world(api)
    other = await api.user(display_name="Someone Else")
    first = await _order(api, customer, shop, product)
    second = await _order(api, customer, shop, product)
    ada = (await _rows_of(resources, "users", "id", customer.id))[0]
    order_one = (await _rows_of(resources, "orders", "id", first["id"]))[0]
    ada_id, other_id = uuid.UUID(customer.id), uuid.UUID(other.id)
    vault = resources.vault

    async with resources.sessionmaker() as session:
        # in place, it opens
        assert (
            await vault.open_for(session, ada_id, ada["email_sealed"], aad=f"users.email:{ada_id}")
            == EMAIL.lower()
        )
        # Ada's email, pasted into another user's row: a different key and a different row
        with pytest.raises(SealedValueError):
            await vault.open_for(
                session, other_id, ada["email_sealed"], aad=f"users.email:{other_id}"
            )
        # into her own display-name column: same key, another column
        with pytest.raises(SealedValueError):
            await vault.open_for(
                session, ada_id, ada["email_sealed"], aad=f"users.display_name:{ada_id}"
            )
        # an order's address into her other order: same key, same column, another row
        with pytest.raises(SealedValueError):
            await vault.open_for(
                session,
                ada_id,
                order_one["shipping_address_sealed"],
                aad=f"orders.shipping_address:{second['id']}",
            )
        # a flipped byte
        sealed = ada["email_sealed"]
        tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
        with pytest.raises(SealedValueError):
            await vault.open_for(session, ada_id, tampered, aad=f"users.email:{ada_id}")


async def test_the_copy_is_refused_end_to_end(api: Api, resources: Resources) -> None:
    """A row whose sealed address was copied from another order fails loudly, not silently."""
    customer, staff, shop, product = await _world(api)
    first = await _order(api, customer, shop, product)
    second = await _order(api, customer, shop, product)
    moved = (await _rows_of(resources, "orders", "id", first["id"]))[0]["shipping_address_sealed"]
    target = (
        second["id"] if resources.engine.dialect.name != "sqlite" else uuid.UUID(second["id"]).hex
    )
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE orders SET shipping_address_sealed = :s WHERE id = :id"),
            {"s": moved, "id": target},
        )
    r = await api.client.get(f"{V1}/shops/{shop['id']}/orders/{second['id']}", headers=staff.auth)
    assert r.status_code == 500
    assert ADDRESS["line1"] not in r.text


async def test_sign_in_by_email_uses_the_blind_index_case_insensitively(
    api: Api, resources: Resources
) -> None:
    r = await api.client.post(
        f"{V1}/auth/register",
        json={"email": "Grace.Hopper@Example.COM", "password": PASSWORD, "display_name": "Grace"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "grace.hopper@example.com"
    for spelling in (
        "grace.hopper@example.com",
        "  GRACE.HOPPER@EXAMPLE.COM ",
        "Grace.Hopper@example.com",
    ):
        login = await api.client.post(
            f"{V1}/auth/login", json={"email": spelling, "password": PASSWORD}
        )
        assert login.status_code == 200, (spelling, login.text)
    wrong = await api.client.post(
        f"{V1}/auth/login", json={"email": "grace.hopper@example.org", "password": PASSWORD}
    )
    assert_problem(wrong, 401, slug="unauthenticated")

    duplicate = await api.client.post(
        f"{V1}/auth/register",
        json={"email": "GRACE.hopper@example.com", "password": PASSWORD, "display_name": "Copy"},
    )
    assert_problem(duplicate, 409, slug="conflict")
    rows = await raw_rows(
        resources,
        "SELECT email_index FROM users WHERE email_index = :i",
        i=resources.vault.blind_index("grace.hopper@example.com"),
    )
    assert len(rows) == 1


async def test_the_blind_index_is_unique_in_the_database(api: Api, resources: Resources) -> None:
    """Even a writer that skipped the service's check cannot store the same email twice."""
    user = await api.user()
    row = (await _rows_of(resources, "users", "id", user.id))[0]
    clone = {
        **row,
        "id": uuid.uuid4().hex if resources.engine.dialect.name == "sqlite" else uuid.uuid4(),
    }
    columns = ", ".join(clone)
    values = ", ".join(f":{c}" for c in clone)
    with pytest.raises(IntegrityError):
        async with resources.engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO users ({columns}) VALUES ({values})"), clone)  # noqa: S608


async def test_a_profile_change_is_sealed_too(api: Api, resources: Resources) -> None:
    user = await api.user(display_name="Before")
    r = await api.client.patch(
        f"{V1}/users/me", json={"display_name": "Charles Babbage"}, headers=user.auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Charles Babbage"
    row = (await _rows_of(resources, "users", "id", user.id))[0]
    assert "babbage" not in json.dumps(row, default=str).lower()
    assert (await api.client.get(f"{V1}/users/me", headers=user.auth)).json()[
        "display_name"
    ] == "Charles Babbage"


async def test_destroy_shreds_the_users_data_and_their_orders_read_anonymised(
    api: Api, resources: Resources, settings: Settings
) -> None:
    customer, staff, shop, product = await _world(api)
    order = await _order(api, customer, shop, product)
    subject = uuid.UUID(customer.id)
    before = (await _rows_of(resources, "users", "id", customer.id))[0]
    wrapped_before = (await _rows_of(resources, "data_keys", "subject_id", customer.id))[0]

    async with resources.sessionmaker() as session, session.begin():
        assert await resources.vault.destroy(session, subject) is True
    async with resources.sessionmaker() as session, session.begin():
        assert await resources.vault.destroy(session, subject) is False  # already gone

    key_row = (await _rows_of(resources, "data_keys", "subject_id", customer.id))[0]
    assert key_row["wrapped_key"] is None
    assert key_row["master_version"] is None
    assert key_row["destroyed_at"] is not None
    assert wrapped_before["wrapped_key"] is not None

    # straight from the table, with a vault of a new process (nothing cached): unreadable
    users = await _rows_of(resources, "users", "id", customer.id)
    orders = await _rows_of(resources, "orders", "id", order["id"])
    assert users[0]["email_sealed"] == before["email_sealed"]  # still there, but shredded
    fresh = build_vault(settings)
    async with resources.sessionmaker() as session:
        opened = await fresh.open_many(
            session,
            [
                (subject, users[0]["email_sealed"], f"users.email:{subject}"),
                (subject, users[0]["display_name_sealed"], f"users.display_name:{subject}"),
                (
                    subject,
                    orders[0]["shipping_address_sealed"],
                    f"orders.shipping_address:{order['id']}",
                ),
            ],
        )
        assert opened == [None, None, None]
        # and nothing new is sealed for them
        with pytest.raises(DataKeyDestroyed):
            await fresh.seal_for(session, subject, "again", aad=f"users.email:{subject}")

    # shop staff read the order anonymised: no address, no error, still counted
    got = await api.client.get(f"{V1}/shops/{shop['id']}/orders/{order['id']}", headers=staff.auth)
    assert got.status_code == 200, got.text
    assert got.json()["shipping_address"] is None
    assert got.json()["customer_erased"] is True
    assert got.json()["total_cents"] == order["total_cents"]
    listing = await api.client.get(f"{V1}/shops/{shop['id']}/orders", headers=staff.auth)
    assert listing.status_code == 200
    (listed,) = [o for o in listing.json()["items"] if o["id"] == order["id"]]
    assert listed["shipping_address"] is None
    assert listed["customer_erased"] is True
    ndjson = await api.client.get(
        f"{V1}/shops/{shop['id']}/orders",
        headers={**staff.auth, "Accept": "application/x-ndjson"},
    )
    assert ndjson.status_code == 200
    (exported,) = [json.loads(line) for line in ndjson.text.splitlines()]
    assert exported["shipping_address"] is None
    assert exported["customer_erased"] is True
    csv = await api.client.get(
        f"{V1}/shops/{shop['id']}/orders", headers={**staff.auth, "Accept": "text/csv"}
    )
    assert csv.status_code == 200
    assert ADDRESS["line1"] not in csv.text
    assert ',"true",' in csv.text  # customer_erased (text cells are quoted)


async def test_destroying_a_subject_without_a_key_blocks_sealing(resources: Resources) -> None:
    subject = uuid.uuid4()
    async with resources.sessionmaker() as session, session.begin():
        assert await resources.vault.destroy(session, subject) is True
    async with resources.sessionmaker() as session, session.begin():
        with pytest.raises(DataKeyDestroyed):
            await resources.vault.seal_for(session, subject, "x", aad="t.c:1")


async def test_a_request_loads_each_data_key_once(
    api: Api, resources: Resources, count_queries: Any
) -> None:
    """Opening the caller's own data costs no query (their key came with their row); a
    listing's page brings its customers' keys along (joined), so it loads none on its own,
    whatever the number of orders and customers."""
    customer, staff, shop, product = await _world(api)
    for _ in range(3):
        await _order(api, customer, shop, product)
    counter = count_queries()

    counter.reset()
    me = await api.client.get(f"{V1}/users/me", headers=customer.auth)
    assert me.status_code == 200
    assert not [s for s in counter.statements if "data_keys" in s and "JOIN" not in s.upper()]

    counter.reset()
    own = await api.client.get(f"{V1}/shops/{shop['id']}/orders", headers=customer.auth)
    assert len(own.json()["items"]) == 3
    assert not [s for s in counter.statements if "FROM data_keys" in s]

    counter.reset()
    listing = await api.client.get(f"{V1}/shops/{shop['id']}/orders", headers=staff.auth)
    assert len(listing.json()["items"]) == 3
    assert all(o["shipping_address"] is not None for o in listing.json()["items"])
    assert not [s for s in counter.statements if "FROM data_keys" in s]
    page = [s for s in counter.statements if "order_lines" in s]
    assert len(page) == 1, counter.statements
    assert "JOIN data_keys" in page[0]


def test_keys_are_refused_when_malformed() -> None:
    from storefront.kit.master_keys import parse_master_keys
    from storefront.vault import MasterKeyError

    good = base64.b64encode(bytes(range(32))).decode()
    assert [v for v, _ in parse_master_keys(f"v2:{good}, v1:{good}")] == ["v2", "v1"]
    for bad in (
        "",
        "v1",
        f"v1:{good[:-4]}",
        "v1:not base64!",
        f"v 1:{good}",
        f"v1:{good},v1:{good}",
    ):
        with pytest.raises(MasterKeyError):
            LocalKeyProvider(parse_master_keys(bad))


def test_a_wrapped_key_is_bound_to_its_subject() -> None:
    provider = LocalKeyProvider([("v1", bytes(32))])
    version, wrapped = provider.wrap(b"k" * 32, context=b"data_keys:a")
    assert provider.unwrap(wrapped, version=version, context=b"data_keys:a") == b"k" * 32
    from storefront.vault import MasterKeyError

    with pytest.raises(MasterKeyError):
        provider.unwrap(wrapped, version=version, context=b"data_keys:b")
    with pytest.raises(MasterKeyError):
        provider.unwrap(wrapped, version="v0", context=b"data_keys:a")
    vault = PersonalDataVault(provider, blind_index_key=bytes(32))
    other = PersonalDataVault(provider, blind_index_key=bytes([1]) * 32)
    assert vault.blind_index(" A@B.example ") == vault.blind_index("a@b.example")
    assert vault.blind_index("a@b.example") != other.blind_index("a@b.example")
