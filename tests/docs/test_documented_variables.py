"""Every STOREFRONT_* variable the README, the docs and the deployment files name is a setting
the service reads (the unknown-variable warning of `storefront` would flag it otherwise), and
the warning names the closest setting for a typo."""

from __future__ import annotations

import re
from pathlib import Path

from storefront.kit.startup import known_env_names, unknown_env_warnings
from storefront.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"STOREFRONT_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)")  # not `..._MAX_*`
# written on purpose: the typo the docs use as an example, and the test tools' prefixes
NOT_SETTINGS = {"STOREFRONT_DATABSE_URL", "STOREFRONT_TEST", "STOREFRONT_BENCH", "STOREFRONT_FUZZ"}


def _documented() -> set[str]:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "deploy").rglob("*")]
    names: set[str] = set()
    for path in files:
        if path.is_file():
            names |= set(NAME.findall(path.read_text(encoding="utf-8", errors="replace")))
    return names - NOT_SETTINGS


def test_every_documented_variable_is_a_setting() -> None:
    documented = _documented()
    assert "STOREFRONT_DATABASE__POOL_SIZE" in documented  # the scan finds them
    assert not list(unknown_env_warnings(dict.fromkeys(documented, "x"), Settings))


def test_a_typo_is_named_with_the_closest_setting_and_known_names_are_quiet() -> None:
    known = known_env_names(Settings)
    assert {"STOREFRONT_WORKERS", "STOREFRONT_DATABASE__POOL_SIZE"} <= known
    environ = {
        "STOREFRONT_DATABSE_URL": "x",
        "storefront_workers": "2",  # the settings read names case-insensitively
        "STOREFRONT_TEST_POSTGRES_URL": "x",
        "PATH": "/bin",
    }
    assert list(unknown_env_warnings(environ, Settings)) == [
        "warning: STOREFRONT_DATABSE_URL is not a Storefront setting and is ignored; "
        "did you mean STOREFRONT_DATABASE_URL?"
    ]
