"""A slow first load of the signing keys at start-up is waited for a few seconds, then left
to finish in the background: never cancelled inside its transaction (on SQLite a load cut off
there left the write lock to the busy timeout, and the first sign-in answered 504)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from storefront.auth import signing_keys
from storefront.auth.signing_keys import KeyStore
from storefront.cli import run_migrations
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.kit.secretbox import SecretBox


async def test_a_slow_startup_load_finishes_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    await asyncio.to_thread(run_migrations, database_url=url)
    engine = create_engine(url)
    try:
        store = KeyStore(
            create_sessionmaker(engine),
            SecretBox("a-test-secret-of-enough-length-0123456789", purpose="keys"),
            keep_seconds=3600,
        )
        generate = signing_keys.generate_key

        def slow_generate() -> signing_keys.SigningKey:
            time.sleep(0.05)  # inside the write transaction, holding SQLite's lock
            return generate()

        async def slow_read(session: object) -> list[signing_keys.SigningKey]:
            await asyncio.sleep(0.3)
            return await KeyStore._read(store, session)  # type: ignore[arg-type]

        monkeypatch.setattr(signing_keys, "generate_key", slow_generate)
        monkeypatch.setattr(store, "_read", slow_read)
        monkeypatch.setattr(signing_keys, "STARTUP_LOAD_SECONDS", 0.1)

        await store.try_load()
        assert len(store.ring) == 0  # start-up went on without waiting for the slow load

        for _ in range(100):  # ... and the load completed on its own, not cut short
            if len(store.ring):
                break
            await asyncio.sleep(0.05)
        assert len(store.ring) == 1
        stored = KeyStore(store._sessionmaker, store._box, keep_seconds=3600)
        await stored.load(create_if_empty=False)  # the first key was committed
        assert len(stored.ring) == 1
    finally:
        await engine.dispose()
