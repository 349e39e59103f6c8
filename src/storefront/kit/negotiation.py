"""Proactive content negotiation on the Accept header (RFC 9110 §12.5.1).

python-mimeparse does the media-range matching and q-values; this module fixes the default
(an absent or empty Accept header gets the first offer), matches media types without regard
to case (RFC 9110 §8.3.1: ``Text/CSV`` is ``text/csv``) and turns "nothing acceptable" into a
typed 406 error. Whatever charges for a representation (the export rate-limit rule) calls the
same function with the same offers, so it sees what the route will send.
"""

from __future__ import annotations

from collections.abc import Sequence

import mimeparse

from storefront.kit.errors import NotAcceptable


def negotiate(accept: str | None, offers: Sequence[str]) -> str:
    """The best of ``offers`` (most preferred first) for ``accept``; raise 406 if none."""
    if accept is None or not accept.strip():
        return offers[0]
    try:
        # mimeparse prefers the *last* of equally good offers: hand them over reversed
        best = mimeparse.best_match(list(reversed(offers)), accept.lower())
    except (mimeparse.MimeTypeParseException, ValueError, IndexError) as exc:  # malformed
        raise NotAcceptable(
            f"Cannot parse the Accept header: {accept[:200]!r}.", headers={"Vary": "Accept"}
        ) from exc
    if not best:
        # the refusal depends on Accept as the answer would have: a cache keeps it apart
        raise NotAcceptable(
            "None of the requested media types is available here; offered: "
            + ", ".join(offers)
            + ".",
            headers={"Vary": "Accept"},
            extra={"available": list(offers)},
        )
    return str(best)
