"""Responses straight from cached bytes: strong ETag, revalidation headers, 304."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response, status

from storefront.cache.response_cache import Entry
from storefront.kit import etag

# the longest If-None-Match / If-Match a route accepts (longer: 422); the cache-hit fast path
# leaves a longer one to the route
MAX_CONDITION_LENGTH = 1024
# public representations: anyone may store them, but must revalidate (ETag) before reuse,
# since a write must be visible to every client as soon as it is acknowledged
REVALIDATE = "no-cache"


def cached_response(
    entry: Entry,
    source: str,
    if_none_match: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """200 with the entry's bytes, or 304 when ``If-None-Match`` matches its ETag.

    ``X-Cache`` tells where the bytes came from (hit-l1, hit-l2, miss, coalesced, bypass,
    off): handy for operators and the benchmark, and it reveals nothing about the data."""
    all_headers = {"ETag": entry.etag, "Cache-Control": REVALIDATE, "X-Cache": source}
    if headers:
        all_headers.update(headers)
    if etag.none_match(if_none_match, entry.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=all_headers)
    return Response(entry.body, media_type="application/json", headers=all_headers)
