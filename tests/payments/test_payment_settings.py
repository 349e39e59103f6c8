"""STOREFRONT_PAYMENTS__*: production refuses the emulator's address and keys; a real
provider's settings are accepted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from storefront.settings import (
    EMULATOR_PAYMENTS_SECRET_KEY,
    EMULATOR_PAYMENTS_WEBHOOK_SECRET,
    Settings,
)
from tests.settings.test_settings import BLIND_KEY, GOOD_SECRET, MASTER_KEY

REAL = {
    "api_base": "https://api.stripe.com",
    "secret_key": "sk_live_" + "x" * 24,
    "webhook_secret": "whsec_" + "y" * 32,
}


def production(payments: dict[str, Any]) -> Settings:
    return Settings(
        environment="production",
        deployment_name="shop-prod",
        auth={"jwt_secret": GOOD_SECRET},
        privacy={"master_keys": f"v1:{MASTER_KEY}", "blind_index_key": BLIND_KEY},
        payments=payments,
    )


def test_a_real_provider_is_accepted_in_production() -> None:
    settings = production(REAL)
    assert settings.payments.api_base == "https://api.stripe.com"
    assert settings.payments.secret_key is not None


@pytest.mark.parametrize(
    "emulator",
    [
        {"api_base": "http://127.0.0.1:8420"},
        {"secret_key": EMULATOR_PAYMENTS_SECRET_KEY},
        {"webhook_secret": EMULATOR_PAYMENTS_WEBHOOK_SECRET},
    ],
)
def test_production_refuses_the_emulator(emulator: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        production({**REAL, **emulator})
    message = str(excinfo.value)
    assert "STOREFRONT_PAYMENTS__" in message
    assert EMULATOR_PAYMENTS_SECRET_KEY not in message  # the refusal never echoes input


def test_outside_production_the_emulator_is_fine_and_no_key_means_no_payments() -> None:
    assert Settings().payments.secret_key is None
    dev = Settings(payments={"api_base": "http://127.0.0.1:8420/", "secret_key": "sk_test_x"})
    assert dev.payments.api_base == "http://127.0.0.1:8420"
    with pytest.raises(ValidationError):
        Settings(payments={"api_base": "ftp://provider.example"})
