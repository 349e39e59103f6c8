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
