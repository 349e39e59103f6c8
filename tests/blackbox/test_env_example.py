"""`.env.example` names only real settings: every STOREFRONT_* variable in it, set or shown
commented out, is one the settings read (a typo there would be copied into deployments and
only warned about at start-up)."""

from __future__ import annotations

import re
from pathlib import Path

from storefront.kit.startup import unknown_env_warnings
from storefront.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
VARIABLE = re.compile(r"^(?:# )?(STOREFRONT_[A-Z0-9_]+)=", re.MULTILINE)


def example_variables() -> set[str]:
    return set(VARIABLE.findall(ENV_EXAMPLE.read_text()))


def test_every_variable_of_env_example_is_a_setting() -> None:
    variables = example_variables()
    assert len(variables) > 30  # the parse found the file's variables
    assert list(unknown_env_warnings(dict.fromkeys(variables, "x"), Settings)) == []


def test_the_check_catches_a_misspelt_variable() -> None:
    warnings = list(unknown_env_warnings({"STOREFRONT_DATABSE_URL": "x"}, Settings))
    assert len(warnings) == 1
    assert "STOREFRONT_DATABASE_URL" in warnings[0]


def test_env_example_sets_what_production_requires() -> None:
    text = ENV_EXAMPLE.read_text()
    for required in (
        "STOREFRONT_ENVIRONMENT=production",
        "STOREFRONT_DEPLOYMENT_NAME=",
        "STOREFRONT_DATABASE_URL=",
        "STOREFRONT_AUTH__JWT_SECRET=",
        "STOREFRONT_PRIVACY__MASTER_KEYS=",
        "STOREFRONT_PRIVACY__BLIND_INDEX_KEY=",
    ):
        assert re.search(rf"^{re.escape(required)}", text, re.MULTILINE), required
