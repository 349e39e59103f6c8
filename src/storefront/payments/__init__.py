"""Payments of orders through the provider (Stripe's API; the localstripe emulator in
development and tests)."""
