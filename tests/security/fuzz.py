"""`make security`'s bounded API fuzzing: schemathesis against the app's own OpenAPI document.

Serves a freshly migrated and seeded SQLite database with `storefront serve` on a free port,
signs in as the demo shop owner (schemathesis_hooks.py, so protected routes are exercised
past 401, signing in again whenever the fuzzer has logged itself out), and runs
schemathesis with: no 5xx (`not_a_server_error`), responses matching their schema and
declared media types, and every error an RFC 9457 problem (schemathesis_hooks.py). Bounded
by --max-examples per operation and the run's --max-time; exits with schemathesis' status.

    python -m tests.security.fuzz [--max-examples N] [--max-time SECONDS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.servers import free_port, wait_ready

CHECKS = ",".join(
    (
        "not_a_server_error",
        "response_schema_conformance",
        "content_type_conformance",
        "errors_are_problem_json",
    )
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=10)
    parser.add_argument("--max-time", type=int, default=60)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="storefront-fuzz-"))
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
        SCHEMATHESIS_HOOKS="tests.security.schemathesis_hooks",
        STOREFRONT_FUZZ_BASE=base,
    )
    cli = [sys.executable, "-m", "storefront.cli"]
    for step in (["migrate"], ["seed", "--if-empty"]):
        subprocess.run([*cli, *step], env=env, check=True, capture_output=True)  # noqa: S603
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen([*cli, "serve"], env=env, stdout=log, stderr=log)  # noqa: S603
    try:
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
        ]
        result = subprocess.run(command, env=env, check=False)  # noqa: S603
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
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
