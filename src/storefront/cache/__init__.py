"""Caching building blocks: the two-level response cache, single-flight, and invalidation
scheduled after a transaction commits. Domain-free: callers pass keys and tags."""

from storefront.cache.invalidation import invalidate_after_commit
from storefront.cache.response_cache import Entry, ResponseCache, make_entry

__all__ = ["Entry", "ResponseCache", "invalidate_after_commit", "make_entry"]
