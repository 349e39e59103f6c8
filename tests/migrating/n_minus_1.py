"""``make n-minus-1``: the previous release's API tests against the current schema.

A rolling deploy migrates first and then replaces the processes one by one: for a while the
previous release serves on the newest schema. This proves it can: the previous release (the
code as it was just before the commit that added the newest migration) is checked out into a
temporary ``git worktree``, its locked dependencies are installed into a virtualenv of its own
under ``.tools/n-minus-1/`` (cached by the hash of its uv.lock), and a subset of its tests that
goes through the data paths (orders, catalog, payments) runs on PostgreSQL, every database of
theirs migrated to head by the CURRENT code (tests/migrating/head_schema_plugin.py).

    python -m tests.migrating.n_minus_1 [--base COMMIT] [pytest args...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).with_name("head_schema_plugin.py")
# the data paths: orders placed, listed and paid, the catalogue read and written, payments
# through the localstripe emulator; PostgreSQL only (where deploys roll)
SUBSET = [
    "tests/orders/test_orders.py",
    "tests/catalog/test_catalog.py",
    "tests/payments/test_payments.py",
]
MARKS = "postgres"


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - git, fixed arguments
        ["git", *args],  # noqa: S607 - git from PATH
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def previous_release() -> str:
    """The parent of the commit that added the newest migration (the head revision's file)."""
    sys.path.insert(0, str(ROOT / "src"))
    from storefront.migrating import scripts

    head = scripts().get_current_head()
    script = scripts().get_revision(head) if head else None
    if script is None:
        raise SystemExit("no migrations: nothing to check")
    path = Path(script.path).relative_to(ROOT)
    added = _git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(path))
    if not added:
        raise SystemExit(f"{path} is not committed yet: commit it, or pass --base")
    return _git("rev-parse", f"{added}^")


def old_environment(worktree: Path) -> Path:
    """A virtualenv with the old release's locked dependencies (not the project itself: its
    code is imported from the worktree), under .tools/n-minus-1/<hash of its lock>."""
    digest = hashlib.sha256(
        (worktree / "uv.lock").read_bytes() + (worktree / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    venv = ROOT / ".tools" / "n-minus-1" / digest
    if (venv / ".installed").exists():
        return venv
    uv = ROOT / ".tools" / "bin" / "uv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run(  # noqa: S603 - the pinned uv
        [str(uv), "sync", "--locked", "--no-install-project", "--python", sys.executable],
        cwd=worktree,
        env=env,
        check=True,
    )
    (venv / ".installed").touch()
    return venv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", help="the previous release's commit (default: found)")
    parser.add_argument("pytest_args", nargs="*", help="instead of the default subset")
    args = parser.parse_args(argv)
    base = args.base or previous_release()
    print(f"N-1: previous release {_git('log', '-1', '--format=%h %s', base)[:100]}")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="storefront-n-minus-1-"))
    worktree = tmp / "previous"
    _git("worktree", "add", "--detach", str(worktree), base)
    try:
        venv = old_environment(worktree)
        plugin_dir = tmp / "plugin"
        plugin_dir.mkdir()
        shutil.copy(PLUGIN, plugin_dir / "head_schema_plugin.py")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(worktree / "src"), str(worktree), str(plugin_dir)]),
            N1_HEAD_PYTHON=sys.executable,
            N1_HEAD_ROOT=str(ROOT),
            VIRTUAL_ENV=str(venv),
        )
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        command = [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "head_schema_plugin",
            "-m",
            MARKS,
            "-q",
            "-n",
            os.environ.get("N1_WORKERS", "4"),
            "-p",
            "no:cacheprovider",
            *(args.pytest_args or SUBSET),
        ]
        print(f"N-1: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, cwd=worktree, env=env, check=False)  # noqa: S603
    finally:
        _git("worktree", "remove", "--force", str(worktree))
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    verdict = "passed" if result.returncode == 0 else "FAILED"
    print(f"N-1: the previous release's tests {verdict} on the head schema ({took:.0f} s)")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
