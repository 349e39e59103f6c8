"""Paths the tests address the API by (written out, not imported from the app: a test that
took the prefix from the code under test could not notice it change)."""

V1 = "/api/v1"
