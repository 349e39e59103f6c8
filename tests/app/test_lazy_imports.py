"""Heavy optional modules load only in processes that use them (start-up time, memory)."""

from __future__ import annotations

import subprocess
import sys

# modules a plain `import storefront.app` must not load: each is needed only when its
# feature is configured (Sentry DSN), by one command (migrate, profiling), or by one driver
LAZY = ["sentry_sdk", "alembic", "pyinstrument", "asyncpg", "aiosqlite"]


def test_importing_the_app_leaves_optional_modules_unloaded() -> None:
    code = f"import sys, storefront.app\nprint(','.join(m for m in {LAZY!r} if m in sys.modules))"
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"loaded eagerly: {done.stdout.strip()}"
