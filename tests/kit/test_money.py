"""Money as v2 serves it: a decimal string in the currency's ISO 4217 minor unit."""

from __future__ import annotations

import pytest

from storefront.kit.money import minor_units, money


@pytest.mark.parametrize(
    ("minor", "currency", "amount"),
    [
        (1250, "EUR", "12.50"),
        (5, "USD", "0.05"),
        (0, "EUR", "0.00"),
        (1250, "JPY", "1250"),
        (1250, "KRW", "1250"),
        (1250, "KWD", "1.250"),
        (7, "BHD", "0.007"),
        (12345, "CLF", "1.2345"),
        (100_000_000_000, "EUR", "1000000000.00"),
    ],
)
def test_amounts_have_the_currency_s_minor_unit_digits(
    minor: int, currency: str, amount: str
) -> None:
    assert money(minor, currency) == {"amount": amount, "currency": currency}


def test_an_unlisted_code_has_two_places() -> None:
    assert minor_units("EUR") == 2
    assert minor_units("jpy") == 0
