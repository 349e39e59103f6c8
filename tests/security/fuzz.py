"""`make security`'s bounded API fuzzing: schemathesis against the app's own OpenAPI document.

Serves a freshly migrated and seeded SQLite database with `storefront serve` on a free port,
signs in as the demo shop owner (schemathesis_hooks.py, so protected routes are exercised
past 401, signing in again whenever the fuzzer has logged itself out), and runs
schemathesis with: no 5xx (`not_a_server_error`), responses matching their schema and
declared media types, and every error an RFC 9457 problem (schemathesis_hooks.py). Bounded
by --max-examples per operation and the run's --max-time.

Then a stateful run of API v2 (--stateful-time seconds, 0 skips it): schemathesis chains
operations through the OpenAPI links of v2's responses (open a shop -> add a product ->
order it -> pay or cancel the order -> read the payment and the order; the product read,
edited, archived), with the same checks. Exits with the first failing run's status.

    python -m tests.security.fuzz [--max-examples N] [--max-time SECONDS] [--stateful-time S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2

from tests.support.servers import LocalStripe, free_port, wait_ready

CHECKS = ",".join(
    (
        "not_a_server_error",
        "response_schema_conformance",
        "content_type_conformance",
        "errors_are_problem_json",
    )
)


def stateful_document(base: str, workdir: Path) -> Path:
    """The served OpenAPI document with each link's body (``x-request-body``, see
    ``storefront.web.hal.op_link``) as its ``requestBody``, sent as it is."""
    document = httpx2.get(f"{base}/openapi.json", timeout=30).json()
    for item in document["paths"].values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    if "x-request-body" in link:
                        link["requestBody"] = link.pop("x-request-body")
                        # the body as given, not merged into a generated one (whose extra
                        # lines and address would make every order a 422)
                        link["x-schemathesis"] = {"merge_body": False}
    path = workdir / "openapi-stateful.json"
    path.write_text(json.dumps(document))
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=10)
    parser.add_argument("--max-time", type=int, default=60)
    parser.add_argument("--stateful-time", type=int, default=60)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="storefront-fuzz-"))
    # payments go to the provider's emulator, so an order chain reaches its payment
    stripe = LocalStripe()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update(
        STOREFRONT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}",
        STOREFRONT_PORT=str(port),
        STOREFRONT_AUTH__ARGON2_TIME_COST="1",
        STOREFRONT_AUTH__ARGON2_MEMORY_KIB="1024",
        STOREFRONT_AUTH__ARGON2_PARALLELISM="1",
        # limiting stays on (its 429s are checked too) with budgets a fuzzer can work within
        STOREFRONT_PROTECTION__ANONYMOUS_RATE="100000/minute",
        STOREFRONT_PROTECTION__USER_RATE="100000/minute",
        STOREFRONT_PROTECTION__AUTH_RATE="100000/minute",
        STOREFRONT_PROTECTION__AUTH_ACCOUNT_RATE="100000/minute",
        # the fuzzer fails sign-ins from one address all the time: don't lock the demo out
        STOREFRONT_AUTH__THROTTLE_ADDRESS_MAX_FAILURES="1000000",
        STOREFRONT_AUTH__THROTTLE_ACCOUNT_MAX_FAILURES="1000000",
        STOREFRONT_AUTH__THROTTLE_UNTRUSTED_MAX_FAILURES="1000000",
        # the fuzzer signs in afresh whenever its session is revoked by a fuzzed call
        STOREFRONT_AUTH__MAX_SESSIONS_PER_USER="10000",
        STOREFRONT_PROTECTION__CONSENT_RATE="100000/minute",
        STOREFRONT_PROTECTION__OPERATIONS_RATE="100000/minute",
        STOREFRONT_PROTECTION__EXPENSIVE_RATE="30/minute",
        # the stateful run opens a shop per scenario, all as the demo owner
        STOREFRONT_MAX_OWNED_SHOPS_PER_USER="100000",
        STOREFRONT_PAYMENTS__API_BASE=stripe.url,
        STOREFRONT_PAYMENTS__SECRET_KEY=stripe.SECRET_KEY,
        STOREFRONT_PAYMENTS__WEBHOOK_SECRET=stripe.WEBHOOK_SECRET,
        SCHEMATHESIS_HOOKS="tests.security.schemathesis_hooks",
        STOREFRONT_FUZZ_BASE=base,
    )
    cli = [sys.executable, "-m", "storefront.cli"]
    for step in (["migrate"], ["seed", "--if-empty"]):
        subprocess.run([*cli, *step], env=env, check=True, capture_output=True)  # noqa: S603
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen([*cli, "serve"], env=env, stdout=log, stderr=log)  # noqa: S603
    try:
        stripe.start()
        wait_ready(base, server, within=60)
        schemathesis = Path(sys.executable).with_name("schemathesis")
        command = [
            str(schemathesis),
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--workers",
            "2",
            "--seed",
            "2026",
            "--request-timeout",
            "35",
            "--suppress-health-check",
            "all",
            # erasing the demo owner would lock the fuzzer out for the rest of the run
            "--exclude-name",
            "DELETE /api/v1/users/me",
            "--exclude-name",
            "DELETE /api/v2/users/me",
        ]
        result = subprocess.run(command, env=env, check=False)  # noqa: S603
        if result.returncode == 0 and args.stateful_time > 0:
            stateful = [
                str(schemathesis),
                "run",
                str(stateful_document(base, workdir)),
                "--url",
                base,
                "--checks",
                CHECKS,
                "--phases",
                "stateful",
                "--include-path-regex",
                "^/api/v2/shops",
                "--max-time",
                str(args.stateful_time),
                "--workers",
                "1",
                "--seed",
                "2026",
                "--request-timeout",
                "35",
                "--suppress-health-check",
                "all",
            ]
            result = subprocess.run(stateful, env=env, check=False)  # noqa: S603
        if result.returncode != 0:
            log.flush()
            tail = (workdir / "server.log").read_text(errors="replace")[-6000:]
            print("---- server log (tail) ----\n" + tail)
        return result.returncode
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        stripe.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
