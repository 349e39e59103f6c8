"""STOREFRONT_ORDERS__*: the payment window, the expiry schedule and the default hold limits
(decision 0118) are read from the environment and refused out of bounds."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from storefront.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STOREFRONT_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    orders = Settings().orders
    assert orders.payment_window_minutes == 30
    assert orders.expiry_interval_seconds == 60
    assert orders.expiry_batch_size == 200
    assert (
        orders.max_line_quantity,
        orders.max_order_units,
        orders.max_pending_units,
        orders.max_pending_stock_percent,
        orders.stock_share_floor_units,
    ) == (100, 200, 500, 50, 5)


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_ORDERS__PAYMENT_WINDOW_MINUTES", "15")
    monkeypatch.setenv("STOREFRONT_ORDERS__EXPIRY_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("STOREFRONT_ORDERS__MAX_PENDING_STOCK_PERCENT", "100")
    orders = Settings().orders
    assert orders.payment_window_minutes == 15
    assert orders.expiry_interval_seconds == 0
    assert orders.max_pending_stock_percent == 100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYMENT_WINDOW_MINUTES", "0"),
        ("PAYMENT_WINDOW_MINUTES", "20000"),
        ("EXPIRY_INTERVAL_SECONDS", "-1"),
        ("EXPIRY_BATCH_SIZE", "0"),
        ("MAX_LINE_QUANTITY", "0"),
        ("MAX_PENDING_STOCK_PERCENT", "101"),
        ("STOCK_SHARE_FLOOR_UNITS", "0"),
    ],
)
def test_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"STOREFRONT_ORDERS__{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
