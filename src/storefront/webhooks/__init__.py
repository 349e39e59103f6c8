"""Outgoing webhooks: shops subscribe an HTTPS endpoint to order events (Standard Webhooks)."""
