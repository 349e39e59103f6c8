"""Run the README's shell examples, in order, against a served Storefront.

The examples meant to run are the fenced ``sh`` blocks right after a ``<!-- run -->`` line
in README.md; every other block (``make run``, PostgreSQL set-up...) is documentation only.
The marked blocks run in one ``bash`` (``set -euo pipefail``), so a variable one block sets
(``TOKEN``, ``SHOP``) is there for the next, from the README's folder (``.venv/bin/...``
works) and with this process's environment (``STOREFRONT_DATABASE_URL`` reaches the CLI
examples). Every ``curl`` in a marked block must fail on an HTTP error (``-f``/``--fail``):
a 4xx or 5xx then fails the run, naming the README line of the block.

The README speaks to the ``make run`` instance on ``localhost:8000``; ``--base-url`` points
the examples at another one (an option, not a ``STOREFRONT_*`` variable, which the service
would take for a misspelt setting). Run it while ``make run`` serves:

    .venv/bin/python -m tests.docs.readme_examples            # README.md, localhost:8000
    .venv/bin/python -m tests.docs.readme_examples --list     # show what would run

The examples use ``curl`` and ``jq``. tests/docs/test_readme_examples.py runs this
against a freshly seeded server in ``make test``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- run -->"
DEFAULT_BASE_URL = "http://localhost:8000"
# how the README addresses the `make run` instance
README_ORIGINS = ("localhost:8000", "127.0.0.1:8000")
SHELLS = {"sh", "bash", "shell", "console"}
# never run from the README: they install, serve forever or run the suite
EXCLUDED = re.compile(r"^\s*make\s+(run|test)\b")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<info>[^`]*)$")
CURL = re.compile(r"(?<![\w./-])curl\b")
CURL_FAILS = re.compile(r"(?<!\S)(--fail(-with-body)?|-[a-zA-Z]*f[a-zA-Z]*)(?!\S)")


class ReadmeError(Exception):
    """The README's marked examples are malformed (not a failure of the examples)."""


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line of the opening fence in the README
    code: str


def examples(text: str) -> list[Example]:
    """The marked shell blocks, dedented, without ``make run``/``make test`` lines."""
    lines = text.splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        fence_at = i + 1
        opening = FENCE.match(lines[fence_at]) if fence_at < len(lines) else None
        if opening is None or opening["info"].strip().split(" ")[0] not in SHELLS:
            raise ReadmeError(f"line {i + 1}: {MARKER} must be followed by a ```sh block")
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        j = fence_at + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j])
            j += 1
        if j == len(lines):
            raise ReadmeError(f"line {fence_at + 1}: the block is never closed")
        if any(line.strip() and not line.startswith(indent) for line in body):
            raise ReadmeError(f"line {fence_at + 1}: the block is indented less than its fence")
        code = textwrap.dedent("\n".join(body))
        kept = "\n".join(line for line in code.splitlines() if not EXCLUDED.match(line))
        _require_curl_fail(kept, fence_at + 1)
        found.append(Example(fence_at + 1, kept))
        i = j + 1
    return found


def _require_curl_fail(code: str, line: int) -> None:
    # a command may continue over lines (trailing backslash): check whole commands
    for command in code.replace("\\\n", " ").splitlines():
        for match in CURL.finditer(command):
            rest = re.split(r"[|;&)]", command[match.end() :], maxsplit=1)[0]
            if not CURL_FAILS.search(rest):
                raise ReadmeError(
                    f"block at line {line}: `curl` without -f/--fail would hide an HTTP error: "
                    f"{command.strip()}"
                )


def retarget(code: str, base_url: str) -> str:
    """Point the README's ``localhost:8000`` at ``base_url``'s host and port."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.netloc:
        raise ReadmeError(f"the base URL must be http://host:port, not {base_url!r}")
    for origin in README_ORIGINS:
        code = code.replace(f"http://{origin}", f"http://{parts.netloc}")
        code = code.replace(origin, parts.netloc)
    return code


def script(found: list[Example], base_url: str) -> str:
    """One bash script: the examples in order; the first failing command names its block."""
    out = [
        "set -euo pipefail",
        "readme_line=0 failed_command=",
        "trap 'failed_command=$BASH_COMMAND' ERR",
        # EXIT, not only ERR: `set -u` (an unset variable) exits without an ERR trap
        "trap 'rc=$?; [ $rc -eq 0 ] || echo \"README example at README.md:$readme_line failed "
        "(exit $rc)${failed_command:+: $failed_command}\" >&2' EXIT",
    ]
    for example in found:
        out += [
            f"readme_line={example.line}",
            f"printf '\\n--- README.md:%s\\n' {example.line} >&2",
            retarget(example.code, base_url),
        ]
    return "\n".join(out) + "\n"


def run(
    readme: Path, base_url: str, *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the README's marked examples (in ``env``, this process's environment by default);
    the finished bash process, its output captured."""
    found = examples(readme.read_text(encoding="utf-8"))
    if not found:
        raise ReadmeError(f"{readme} has no {MARKER} examples")
    return subprocess.run(  # noqa: S603 - bash runs the README's own examples
        ["bash", "-c", script(found, base_url)],  # noqa: S607 - bash from PATH, as a reader has it
        cwd=readme.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"default: {DEFAULT_BASE_URL}")
    parser.add_argument("--list", action="store_true", help="print the script, run nothing")
    args = parser.parse_args(argv)
    try:
        found = examples(args.readme.read_text(encoding="utf-8"))
        if args.list:
            print(script(found, args.base_url), end="")
            return 0
        done = run(args.readme, args.base_url)
    except ReadmeError as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 2
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
