"""Settings: environment variables are read, and production refuses unsafe values."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from storefront.settings import DEFAULT_JWT_SECRET, Environment, Settings

GOOD_SECRET = "7c1f0e9a4b2d8c6e5f3a1b0d9e8c7f6a5b4c3d2e"  # 40 chars, not the default
MASTER_KEY = "q3Jx9b1C4vZ0mT6yP2sW8kN5hL7dF1gA3eR0uI9oY2c="  # base64, 32 bytes
BLIND_KEY = "Zm9yLXRlc3RzLW9ubHktYmxpbmQtaW5kZXgta2V5IS0="  # base64, 32 bytes


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STOREFRONT_* variable from the outer environment leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("STOREFRONT_"):
            monkeypatch.delenv(name)


def production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production",
        "deployment_name": "shop-prod",
        "auth": {"jwt_secret": GOOD_SECRET},
        "cors_origins": ["https://shop.example.com"],
        "privacy": {"master_keys": f"v1:{MASTER_KEY}", "blind_index_key": BLIND_KEY},
    }
    values.update(overrides)
    return Settings(**values)


def refusal(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as excinfo:
        production(**overrides)
    message = str(excinfo.value)
    assert "unsafe production settings" in message
    return message


# --- production safety --------------------------------------------------------------------


def test_a_proper_production_config_is_accepted() -> None:
    settings = production()
    assert settings.environment is Environment.production
    assert settings.auth.jwt_secret.get_secret_value() == GOOD_SECRET
    assert settings.debug is False
    assert settings.cors_origins == ["https://shop.example.com"]


def test_production_without_cors_origins_is_accepted() -> None:
    assert production(cors_origins=[]).cors_origins == []


def test_production_refuses_the_default_jwt_secret() -> None:
    message = refusal(auth={})
    assert "STOREFRONT_AUTH__JWT_SECRET" in message
    message = refusal(auth={"jwt_secret": DEFAULT_JWT_SECRET})
    assert "STOREFRONT_AUTH__JWT_SECRET" in message


def test_production_refuses_a_short_jwt_secret() -> None:
    assert "STOREFRONT_AUTH__JWT_SECRET" in refusal(auth={"jwt_secret": "x" * 31})
    assert production(auth={"jwt_secret": "x" * 32}).auth.jwt_secret.get_secret_value() == (
        "x" * 32
    )


def test_production_refuses_debug() -> None:
    assert "STOREFRONT_DEBUG" in refusal(debug=True)


@pytest.mark.parametrize(
    "origins", [["*"], ["https://shop.example.com", "*"], "*", "https://a.example, *"]
)
def test_production_refuses_a_wildcard_cors_origin(origins: Any) -> None:
    assert "STOREFRONT_CORS_ORIGINS" in refusal(cors_origins=origins)


@pytest.mark.parametrize(
    "origins",
    [
        "http://shop.example.com",
        "https://shop.example.com,http://admin.example.com",
        "http://localhost:5173",
    ],
)
def test_production_refuses_a_plain_http_cors_origin(origins: str) -> None:
    """Decision 0188: a page served over http:// can be changed by anyone on its path, and
    the API would then answer its scripts as the visitor."""
    message = refusal(cors_origins=origins)
    assert "STOREFRONT_CORS_ORIGINS must list https:// origins only" in message
    plain = [o for o in origins.split(",") if o.startswith("http://")]
    assert all(o in message for o in plain), message
    assert "https://shop.example.com" not in message  # only the plain ones are named


def test_http_cors_origins_are_fine_outside_production() -> None:
    for environment in ("development", "test"):
        settings = Settings(environment=environment, cors_origins="http://localhost:5173")
        assert settings.cors_origins == ["http://localhost:5173"]
    assert production(cors_origins="https://a.example,https://b.example:8443")


@pytest.mark.parametrize(
    "proxies",
    [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/8,0.0.0.0/1",  # half the internet, next to a sound entry
        "128.0.0.0/1",
        "2000::/3",  # all of IPv6's global unicast
        "::ffff:0:0/96",  # every IPv4 client as a dual-stack socket shows it
        "11.0.0.0/8",  # a public /8
    ],
)
def test_production_refuses_trusted_proxies_that_hold_clients_at_large(proxies: str) -> None:
    """Decision 0187: everyone in a trusted range may set X-Forwarded-For, and so choose the
    address that rate limits, sign-in throttles and the audit log see."""
    message = refusal(trusted_proxies=proxies)
    assert "STOREFRONT_TRUSTED_PROXIES" in message
    wide = [p for p in proxies.split(",") if p != "10.0.0.0/8"]
    assert all(p in message for p in wide), message
    assert "10.0.0.0/8," not in message  # the sound entry is not named


@pytest.mark.parametrize(
    "proxies",
    [
        "10.0.0.0/8",  # a pod network: private, however wide
        "172.16.0.0/12,192.168.0.0/16,fc00::/7,127.0.0.1",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT, some cluster networks)
        "104.16.0.0/13,173.245.48.0/20,2a06:98c0::/29",  # published CDN ranges
        "203.0.113.7,2001:db8::/48",
        "::ffff:10.0.0.0/104",
    ],
)
def test_production_accepts_proxy_networks(proxies: str) -> None:
    assert production(trusted_proxies=proxies).trusted_proxies == proxies.split(",")


def test_wide_trusted_proxies_are_accepted_outside_production() -> None:
    assert Settings(environment="development", trusted_proxies="0.0.0.0/0").trusted_proxies == [
        "0.0.0.0/0"
    ]


def test_production_refuses_sql_echo() -> None:
    assert "STOREFRONT_DATABASE__ECHO" in refusal(database={"echo": True})


def test_production_refuses_to_start_without_a_master_key() -> None:
    message = refusal(privacy={})
    assert "STOREFRONT_PRIVACY__MASTER_KEYS" in message
    assert "STOREFRONT_PRIVACY__BLIND_INDEX_KEY" in message
    message = refusal(privacy={"master_keys": f"v1:{MASTER_KEY}"})
    assert "STOREFRONT_PRIVACY__BLIND_INDEX_KEY" in message
    # a key file carries both (its blind-index key is checked when the keys load)
    assert production(privacy={"master_key_file": "/run/secrets/keys.json"})


@pytest.mark.parametrize(
    "privacy",
    [
        {"master_keys": "v1:c2hvcnQ="},  # 5 bytes
        {"master_keys": f"{MASTER_KEY}"},  # no version
        {"master_keys": f"v1:{MASTER_KEY},v1:{MASTER_KEY}"},
        {"blind_index_key": "not base64 at all!"},
    ],
    ids=["short", "no-version", "duplicate-version", "bad-blind-index-key"],
)
def test_malformed_keys_are_refused_without_printing_them(privacy: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Settings(privacy=privacy)
    message = str(excinfo.value)
    assert MASTER_KEY not in message
    assert "c2hvcnQ=" not in message


def test_the_production_vault_uses_the_configured_keys(tmp_path: Any) -> None:
    import base64
    import json

    from storefront.vault import MasterKeyError
    from storefront.vault.config import build_vault, key_material

    provider, blind = key_material(
        production(
            privacy={"master_keys": f"v2:{MASTER_KEY},v1:{BLIND_KEY}", "blind_index_key": BLIND_KEY}
        )
    )
    assert provider.current_version == "v2"
    assert provider.versions == ("v2", "v1")
    assert blind == base64.b64decode(BLIND_KEY)

    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "current": "b",
                "keys": {"a": MASTER_KEY, "b": BLIND_KEY},
                "blind_index_key": BLIND_KEY,
            }
        )
    )
    provider, _ = key_material(production(privacy={"master_key_file": str(keys)}))
    assert provider.versions == ("b", "a")
    keys.write_text(json.dumps({"current": "a", "keys": {"a": MASTER_KEY}}))
    with pytest.raises(MasterKeyError, match="BLIND_INDEX_KEY"):
        build_vault(production(privacy={"master_key_file": str(keys)}))
    keys.write_text(json.dumps({"current": "z", "keys": {"a": MASTER_KEY}}))
    with pytest.raises(MasterKeyError, match="current"):
        build_vault(production(privacy={"master_key_file": str(keys)}))


def test_development_derives_its_keys_from_the_secret() -> None:
    from storefront.vault.config import key_material

    one, blind_one = key_material(Settings())
    two, blind_two = key_material(Settings(auth={"jwt_secret": GOOD_SECRET}))
    assert one.current_version == two.current_version == "dev"
    assert blind_one != blind_two
    version, wrapped = one.wrap(b"k" * 32, context=b"c")
    assert one.unwrap(wrapped, version=version, context=b"c") == b"k" * 32


def test_production_lists_every_problem_at_once() -> None:
    message = refusal(auth={}, debug=True, cors_origins=["*"])
    for name in ("STOREFRONT_AUTH__JWT_SECRET", "STOREFRONT_DEBUG", "STOREFRONT_CORS_ORIGINS"):
        assert name in message


def test_the_refusal_does_not_print_the_secret() -> None:
    secret = "short-but-secret"
    message = refusal(auth={"jwt_secret": secret})
    assert secret not in message


def test_the_refusal_does_not_print_the_database_password() -> None:
    message = refusal(debug=True, database_url="postgresql+asyncpg://app:db-pass-123@db/shop")
    assert "db-pass-123" not in message


def test_a_refusal_from_the_environment_prints_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOREFRONT_ENVIRONMENT", "production")
    monkeypatch.setenv("STOREFRONT_AUTH__JWT_SECRET", "too-short-secret")
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", "postgresql+asyncpg://app:db-pass-456@db/x")
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    message = str(excinfo.value)
    assert "STOREFRONT_AUTH__JWT_SECRET" in message
    assert "too-short-secret" not in message
    assert "db-pass-456" not in message


@pytest.mark.parametrize("environment", ["development", "test"])
def test_other_environments_allow_development_defaults(environment: str) -> None:
    settings = Settings(environment=environment, debug=True, cors_origins=["*"])
    assert settings.environment.value == environment
    assert settings.auth.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET
    assert settings.cors_origins == ["*"]


def test_the_default_environment_is_development() -> None:
    assert Settings().environment is Environment.development


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(environment="staging")


def test_the_secret_is_hidden_in_repr() -> None:
    settings = production()
    assert GOOD_SECRET not in repr(settings)
    assert GOOD_SECRET not in str(settings)
    assert GOOD_SECRET not in repr(settings.auth)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1234  # type: ignore[misc]


# --- environment variables ----------------------------------------------------------------


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", "postgresql+asyncpg://app@db.internal/shop")
    monkeypatch.setenv("STOREFRONT_PORT", "9001")
    monkeypatch.setenv("STOREFRONT_AUTH__ACCESS_TOKEN_TTL_SECONDS", "120")
    monkeypatch.setenv("STOREFRONT_CORS_ORIGINS", "https://a.example.com, https://b.example.com")

    settings = Settings()

    assert settings.database_url == "postgresql+asyncpg://app@db.internal/shop"
    assert settings.is_sqlite is False
    assert settings.port == 9001
    assert settings.auth.access_token_ttl_seconds == 120
    assert settings.cors_origins == ["https://a.example.com", "https://b.example.com"]
    # untouched values keep their defaults
    assert settings.auth.jwt_issuer == "storefront"
    assert settings.auth.jwt_audience == "storefront-api"


def test_defaults_without_environment_variables() -> None:
    settings = Settings()
    assert settings.port == 8000
    assert settings.database_url.startswith("sqlite")
    assert settings.is_sqlite is True
    assert settings.auth.access_token_ttl_seconds == 900
    assert settings.cors_origins == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", []),
        ("https://one.example.com", ["https://one.example.com"]),
        (
            " https://a.example.com ,, https://b.example.com ,",
            ["https://a.example.com", "https://b.example.com"],
        ),
    ],
    ids=["empty", "one", "messy"],
)
def test_cors_origins_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("STOREFRONT_CORS_ORIGINS", raw)
    assert Settings().cors_origins == expected


def test_nested_groups_are_read_with_a_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_DATABASE__POOL_SIZE", "33")
    monkeypatch.setenv("STOREFRONT_AUTH__JWT_ISSUER", "issuer-from-env")
    monkeypatch.setenv("STOREFRONT_IDEMPOTENCY__TTL_HOURS", "48")
    settings = Settings()
    assert settings.database.pool_size == 33
    assert settings.auth.jwt_issuer == "issuer-from-env"
    assert settings.idempotency.ttl_hours == 48


def test_environment_variable_names_are_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("storefront_port", "8123")
    assert Settings().port == 8123


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STOREFRONT_PORT", "0"),
        ("STOREFRONT_PORT", "65536"),
        ("STOREFRONT_PORT", "eighty"),
        ("STOREFRONT_AUTH__ACCESS_TOKEN_TTL_SECONDS", "29"),
        ("STOREFRONT_AUTH__ACCESS_TOKEN_TTL_SECONDS", "3601"),
        ("STOREFRONT_DATABASE__POOL_SIZE", "0"),
        ("STOREFRONT_ENVIRONMENT", "prod"),
    ],
)
def test_out_of_range_environment_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_production_from_the_environment_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="STOREFRONT_AUTH__JWT_SECRET"):
        Settings()

    monkeypatch.setenv("STOREFRONT_AUTH__JWT_SECRET", GOOD_SECRET)
    with pytest.raises(ValidationError, match="STOREFRONT_PRIVACY__MASTER_KEYS"):
        Settings()

    monkeypatch.setenv("STOREFRONT_PRIVACY__MASTER_KEYS", f"v1:{MASTER_KEY}")
    monkeypatch.setenv("STOREFRONT_PRIVACY__BLIND_INDEX_KEY", BLIND_KEY)
    with pytest.raises(ValidationError, match="STOREFRONT_DEPLOYMENT_NAME"):
        Settings()

    monkeypatch.setenv("STOREFRONT_DEPLOYMENT_NAME", "shop-prod")
    settings = Settings()
    assert settings.environment is Environment.production
    assert settings.auth.jwt_secret.get_secret_value() == GOOD_SECRET


@pytest.mark.parametrize(
    ("name", "value", "flagged"),
    [
        ("STOREFRONT_DEBUG", "true", "STOREFRONT_DEBUG"),
        ("STOREFRONT_CORS_ORIGINS", "*", "STOREFRONT_CORS_ORIGINS"),
        ("STOREFRONT_CORS_ORIGINS", "https://a.example.com,*", "STOREFRONT_CORS_ORIGINS"),
        ("STOREFRONT_DATABASE__ECHO", "1", "STOREFRONT_DATABASE__ECHO"),
    ],
)
def test_production_from_the_environment_refuses_unsafe_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, flagged: str
) -> None:
    monkeypatch.setenv("STOREFRONT_ENVIRONMENT", "production")
    monkeypatch.setenv("STOREFRONT_AUTH__JWT_SECRET", GOOD_SECRET)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=flagged):
        Settings()


def test_constructor_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_PORT", "9001")
    assert Settings(port=9002).port == 9002


@pytest.mark.parametrize(
    "value",
    [
        '["https://app.example"]',  # JSON: read as one origin "[https://app.example]"
        "https://app.example/",  # a browser's Origin has no trailing slash
        "https://app.example/app",
        "app.example",
        "ftp://app.example",
        "https://user@app.example",
        "https://app.example:99999",
    ],
)
def test_an_entry_that_is_not_an_origin_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such an entry matched no browser's Origin, so every CORS call was refused while the
    service started as if configured."""
    monkeypatch.setenv("STOREFRONT_CORS_ORIGINS", value)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert "cors_origins" in str(excinfo.value)
    assert "is not an origin" in str(excinfo.value)


def test_origins_as_browsers_send_them_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_CORS_ORIGINS", "https://app.example, http://localhost:5173,*")
    assert Settings().cors_origins == ["https://app.example", "http://localhost:5173", "*"]


# --- the payment lease and the idempotency key's lock (decision 0191) ---------------------


def test_a_key_lock_shorter_than_the_payment_lease_is_refused() -> None:
    # the payment's lease is 2 x 40 + 5 = 85 s, past the key's default 60 s lock
    with pytest.raises(ValidationError) as excinfo:
        Settings(payments={"timeout_seconds": 40})
    message = str(excinfo.value)
    assert "STOREFRONT_IDEMPOTENCY__LOCK_TIMEOUT_SECONDS (60)" in message
    assert "85 s" in message


def test_a_key_lock_longer_than_the_payment_lease_is_accepted() -> None:
    settings = Settings(payments={"timeout_seconds": 40}, idempotency={"lock_timeout_seconds": 90})
    assert settings.idempotency.lock_timeout_seconds > settings.payments.claim_seconds
    assert Settings().idempotency.lock_timeout_seconds > Settings().payments.claim_seconds
