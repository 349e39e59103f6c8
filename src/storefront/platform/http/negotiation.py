"""Proactive content negotiation on the Accept header (RFC 9110 §12.5.1).

python-mimeparse does the media-range matching and q-values; this module fixes the default
(an absent or empty Accept header gets the first offer) and turns "nothing acceptable" into
a typed 406 error.
"""

from __future__ import annotations

from collections.abc import Sequence

import mimeparse

from storefront.platform.errors import NotAcceptable


def negotiate(accept: str | None, offers: Sequence[str]) -> str:
    """The best of ``offers`` (most preferred first) for ``accept``; raise 406 if none."""
    if accept is None or not accept.strip():
        return offers[0]
    try:
        # mimeparse prefers the *last* of equally good offers: hand them over reversed
        best = mimeparse.best_match(list(reversed(offers)), accept)
    except (mimeparse.MimeTypeParseException, ValueError, IndexError) as exc:  # malformed
        raise NotAcceptable(f"Cannot parse the Accept header: {accept[:200]!r}.") from exc
    if not best:
        raise NotAcceptable(
            "None of the requested media types is available here; offered: "
            + ", ".join(offers)
            + ".",
            extra={"available": list(offers)},
        )
    return str(best)
