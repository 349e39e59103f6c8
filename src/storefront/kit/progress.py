"""Progress of a long pass over every row (a data migration): "sealed 500/12000 user rows".

Lines go to the ``storefront.migrations`` logger: ``storefront migrate`` prints them; the
test suite and other callers of the migrations see nothing unless they configure it. At
most one line every ``interval`` seconds, and always the last one, so a pass over millions
of rows says where it is without flooding the terminal.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("storefront.migrations")


class RowProgress:
    def __init__(self, verb: str, what: str, total: int, *, interval: float = 1.0) -> None:
        self.verb = verb
        self.what = what
        self.total = total
        self.done = 0
        self.interval = interval
        self._last = float("-inf")
        if total == 0:
            logger.info("%s 0/0 %s (nothing to do)", verb, what)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.interval:
            self._last = now
            logger.info("%s %d/%d %s", self.verb, self.done, self.total, self.what)
