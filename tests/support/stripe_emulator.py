"""Run the localstripe emulator (Stripe's API) on loopback only, in memory.

``localstripe --port N`` listens on every interface and keeps its state in
/tmp/localstripe.pickle, shared by every emulator on the machine; this runs the same app on
127.0.0.1 with nothing read from or written to disk, so each process starts empty. With
``--webhook-url`` it sends its events there, signed with ``--webhook-secret`` (Stripe's
scheme). Used by the tests (tests/support/servers.py), by ``make run`` and, listening on
``--host 0.0.0.0`` in its own container, by the compose stack (deploy/compose):

    python tests/support/stripe_emulator.py --port 8420 \\
        --webhook-url http://127.0.0.1:8000/api/v1/webhooks/stripe --webhook-secret whsec_...
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web
from localstripe.resources import store  # type: ignore[import-untyped]
from localstripe.server import app  # type: ignore[import-untyped]
from localstripe.webhooks import register_webhook  # type: ignore[import-untyped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--host", default="127.0.0.1", help="listen address (the compose stack: 0.0.0.0)"
    )
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret", default="whsec_localstripe")
    args = parser.parse_args()
    store.dump_to_disk = lambda: None  # in memory only
    if args.webhook_url:
        register_webhook("storefront", args.webhook_url, args.webhook_secret, None)
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
