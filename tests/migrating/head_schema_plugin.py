"""pytest plugin for the N-1 check (``make n-minus-1``), loaded into the PREVIOUS release's
test run with ``-p head_schema_plugin``: every database its fixtures create is migrated by the
CURRENT code's ``storefront migrate`` (to head), never by the old code's own migrations, so
the old tests run against the schema a rolling deploy leaves them with.

Loaded before the old ``conftest.py``: it replaces ``storefront.cli.run_migrations`` (which
the old fixtures import from there) before they import it.
"""

from __future__ import annotations

import os
import subprocess

import storefront.cli

HEAD_PYTHON = os.environ["N1_HEAD_PYTHON"]  # the current code's interpreter
HEAD_ROOT = os.environ["N1_HEAD_ROOT"]  # the current checkout


def migrate_with_head_code(revision: str = "head", *, database_url: str | None = None) -> None:
    if revision != "head":
        raise RuntimeError(f"the N-1 check migrates to head only, not {revision}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOREFRONT_", "N1_"))}
    env.pop("PYTHONPATH", None)
    if database_url:
        env["STOREFRONT_DATABASE_URL"] = database_url
    done = subprocess.run(  # noqa: S603 - the current code's own CLI
        [HEAD_PYTHON, "-m", "storefront.cli", "migrate"],
        cwd=HEAD_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"head migrate failed:\n{done.stdout}\n{done.stderr}")


storefront.cli.run_migrations = migrate_with_head_code
