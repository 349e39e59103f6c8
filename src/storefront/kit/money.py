"""Money as served by API v2: ``{"amount": "12.50", "currency": "EUR"}``, the amount a decimal
string with exactly the currency's minor-unit digits (ISO 4217).

Amounts are stored as integers of the currency's minor unit (``total_cents``). Most
currencies have two decimal places; the ones below differ (ISO 4217's list of currency
codes, the "Minor unit" column). A code not in the list is served with two, as stored.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict

# ISO 4217 currencies whose minor unit is not 2 decimal places
MINOR_UNITS: dict[str, int] = {
    # no minor unit
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # thousandths
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # ten-thousandths
    "CLF": 4,
    "UYW": 4,
}
DEFAULT_MINOR_UNITS = 2


class Money(TypedDict):
    amount: str
    currency: str


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (ISO 4217)."""
    return MINOR_UNITS.get(currency.upper(), DEFAULT_MINOR_UNITS)


def money(amount_minor: int, currency: str) -> Money:
    """An amount in minor units as the v2 money object: 1250 EUR -> "12.50", 1250 JPY ->
    "1250", 1250 KWD -> "1.250"."""
    places = minor_units(currency)
    amount = Decimal(amount_minor).scaleb(-places)
    return {"amount": f"{amount:.{places}f}", "currency": currency}
