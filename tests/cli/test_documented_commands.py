"""Every `storefront ...` command the README and the docs name exists (`storefront keys rotate`,
`.venv/bin/storefront audit verify`), with the options they show: the prose cannot send an
operator to a command the CLI does not have."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from storefront.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `storefront keys rotate-master --dry-run`: the words and options after "storefront"
# (not the namespace of `kubectl -n storefront get hpa` or `linkerd viz -n storefront edges`)
COMMAND = re.compile(
    r"(?<![\w.-])(?<!-n )(?<!--namespace )(?<!--namespace=)"
    r"storefront((?: +(?:--?[a-z][a-z-]*|[a-z][a-z-]*))+)"
)


def invocations(text: str) -> list[list[str]]:
    return [match.group(1).split() for match in COMMAND.finditer(text)]


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer's own click: not click.Group


def problem(root: Any, words: list[str]) -> str | None:
    """Why ``storefront <words>`` is not a command of the CLI, or None."""
    command = root
    for word in words:
        if word.startswith("-"):
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            if word not in options | {"--help"}:
                return f"no option {word}"
        elif is_group(command):
            sub = command.commands.get(word)
            if sub is None:
                return f"no command {word!r}"
            command = sub
        else:
            return None  # a positional argument or prose after a complete command
    if is_group(command) and words[-1:] != ["--help"]:
        return "a group, not a command"
    return None


def test_invocations_are_read_as_written() -> None:
    text = (
        "Run `storefront keys rotate-master --dry-run`, `.venv/bin/storefront migrate 0007` "
        "and storefront worker; the Storefront project; `kubectl -n storefront get hpa`, "
        "`kubectl --namespace storefront rollout status`, `linkerd viz -n storefront edges`."
    )
    assert invocations(text) == [["keys", "rotate-master", "--dry-run"], ["migrate"], ["worker"]]


def test_problems_are_found() -> None:
    root = typer.main.get_command(app)
    assert problem(root, ["keys", "rotate"]) is None
    assert problem(root, ["keys", "spin"]) == "no command 'spin'"
    assert problem(root, ["keys"]) == "a group, not a command"
    assert problem(root, ["keys", "--help"]) is None
    assert problem(root, ["--help"]) is None
    assert problem(root, ["worker", "refuses", "to", "start"]) is None  # prose after a command
    assert problem(root, ["deploy"]) == "no command 'deploy'"
    assert problem(root, ["seed", "--if-empty"]) is None
    assert problem(root, ["seed", "--force-production"]) == "no option --force-production"


def test_every_documented_command_exists() -> None:
    root = typer.main.get_command(app)
    wrong = [
        f"{document.relative_to(ROOT)}: storefront {' '.join(words)}: {reason}"
        for document in DOCUMENTS
        for words in invocations(document.read_text(encoding="utf-8"))
        if (reason := problem(root, words)) is not None
    ]
    assert not wrong, "documented but not in the CLI:\n" + "\n".join(wrong)
