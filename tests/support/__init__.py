"""Helpers shared by the tests: the per-worker app cache, problem assertions, API paths."""
