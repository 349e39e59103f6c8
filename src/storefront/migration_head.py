"""Where the Alembic migrations live and which revision the code expects."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


class MigrationsNotFound(RuntimeError):
    pass


def migrations_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "migrations"
        if (candidate / "env.py").exists():
            return candidate
    raise MigrationsNotFound("cannot find the migrations directory")


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision this code was written for (None if migrations are not shipped)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    try:
        location = migrations_dir()
    except MigrationsNotFound:
        return None
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    return ScriptDirectory.from_config(cfg).get_current_head()


def schema_compatible(current: str | None, expected: str) -> bool:
    """The database is at the revision this code expects, or at a newer one.

    A rolling deploy migrates first: the previous release then runs on a newer schema, which
    expand/contract keeps working for it (docs/migrations.md; ``make n-minus-1`` proves it),
    so it must stay ready instead of every old process leaving the load balancer at once.
    Revisions are numbered in sequence (0001, 0002, ...; tests/migrating keeps them so): a
    larger number is newer. An older or unknown revision is not compatible."""
    if current is None:
        return False
    if current == expected:
        return True
    numbered = current.isdigit() and expected.isdigit() and len(current) == len(expected)
    return numbered and int(current) > int(expected)
