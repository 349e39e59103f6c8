"""``storefront migrate``: say where the database is, what will be applied, refuse a downgrade
unless it is asked for, and report each revision as it is applied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util.exc import CommandError

from storefront.kit.db import create_engine
from storefront.kit.startup import EXIT_CONFIG, CommandRefused
from storefront.migration_head import migrations_dir


@dataclass(frozen=True, slots=True)
class Applied:
    revision: str
    message: str
    upgrade: bool
    seconds: float


@dataclass(slots=True)
class Plan:
    current: str | None  # None: an empty database (no revision)
    target: str | None  # None: "base" (everything undone)
    head: str | None
    downgrade: bool
    steps: list[Script] = field(default_factory=list)  # in the order they will run


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["configure_logging"] = False
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def message_of(script: Script) -> str:
    return (script.doc or "").strip().splitlines()[0] if script.doc else ""


def current_revision(database_url: str) -> str | None:
    """The database's revision (None when it has none yet). Connecting here first also
    makes an unreachable database fail before anything else is attempted."""

    async def read() -> str | None:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def make_plan(script: ScriptDirectory, current: str | None, revision: str) -> Plan:
    head = script.get_current_head()
    known = [r.revision for r in script.walk_revisions()]  # newest first
    if current is not None and current not in known:
        raise CommandRefused(
            f"the database is at revision {current}, which this version of Storefront does "
            f"not know (its newest is {head}): newer code has migrated it. Deploy that code, "
            "or restore a backup taken before it ran. Nothing was changed."
        )
    if revision == "base":
        target: str | None = None
    else:
        try:
            resolved = script.get_revision(revision)
        except CommandError:
            resolved = None
        if resolved is None:
            raise CommandRefused(
                f"unknown revision {revision!r}; this version knows "
                f"{', '.join(reversed(known))} (head: {head})",
                exit_code=EXIT_CONFIG,
            )
        target = resolved.revision
    below_current = set(known[known.index(current) + 1 :]) if current is not None else set()
    if target == current:
        return Plan(current, target, head, downgrade=False)
    if target is None or target in below_current:
        steps = list(script.iterate_revisions(current, target or "base"))
        steps = [s for s in steps if s.revision != target]
        return Plan(current, target, head, downgrade=True, steps=steps)
    steps = list(reversed(list(script.iterate_revisions(target, current or "base"))))
    steps = [s for s in steps if s.revision != current]
    return Plan(current, target, head, downgrade=False, steps=steps)


def apply(
    plan: Plan,
    *,
    database_url: str | None,
    on_applied: Callable[[Applied], None] | None = None,
) -> list[Applied]:
    """Run the plan (upgrade or downgrade); ``on_applied`` hears of each revision as it is
    done (its message and how long it took)."""
    cfg = alembic_config(database_url)
    done: list[Applied] = []
    started = time.monotonic()

    def record(*, step: Any, **_: Any) -> None:
        nonlocal started
        if not step.is_migration:
            return
        revision = step.up_revision_id
        script_rev = step.up_revision
        now = time.monotonic()
        applied = Applied(
            revision=str(revision),
            message=message_of(script_rev) if script_rev is not None else "",
            upgrade=bool(step.is_upgrade),
            seconds=now - started,
        )
        started = now
        done.append(applied)
        if on_applied is not None:
            on_applied(applied)

    cfg.attributes["on_version_apply"] = record
    if plan.downgrade:
        command.downgrade(cfg, plan.target or "base")
    else:
        command.upgrade(cfg, plan.target or "head")
    return done
