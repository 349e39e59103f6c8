"""The API compatibility gate (decision 0144, docs/api-versioning.md).

The OpenAPI documents of v1 and v2 are committed (openapi/v1.json, openapi/v2.json). This
regenerates them from the application and fails

- on a breaking change of either version against each committed version of its document
  (the current one and every earlier one in the repository's history, so rewriting the
  committed document does not launder a break), judged by Optic's breaking-changes rules
  (@useoptic/optic, pinned by tests/api_contract/optic/package-lock.json and installed from
  npm into .tools/openapi-gate by ``make api-contract``; it runs offline);
- on any difference between the regenerated documents and the committed ones (a change that
  is not breaking still has to be committed, ``--write``).

    python -m tests.api_contract.gate            # check (CI)
    python -m tests.api_contract.gate --write    # regenerate the committed documents
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "openapi"
VERSIONS = {"v1": "/api/v1/", "v2": "/api/v2/"}
TOOL_DIR = ROOT / ".tools" / "openapi-gate"
OPTIC = TOOL_DIR / "node_modules" / ".bin" / "optic"
MAX_HISTORY = 30  # commits of a document's history looked at
# the committed versions each new document is diffed against (a diff of v1 takes the tool
# most of a minute): the newest ones, which catch a break committed together with its
# document, and the oldest, the contract as first published
NEWEST_CHECKED = 2


def _settings() -> Any:
    from storefront.settings import Settings

    # the document must not depend on where it is generated: fixed, non-production settings
    env = {k: v for k, v in os.environ.items() if k.startswith("STOREFRONT_")}
    for key in env:
        del os.environ[key]
    try:
        return Settings(environment="test", docs_enabled=True)
    finally:
        os.environ.update(env)


def full_document() -> dict[str, Any]:
    from storefront.app import create_app

    app = create_app(_settings())
    return dict(app.openapi())


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def split(document: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The operations under ``prefix`` and only the components they reach."""
    paths = {p: ops for p, ops in document["paths"].items() if p.startswith(prefix)}
    components = document.get("components", {})
    kept: dict[str, dict[str, Any]] = {}
    pending = list(_refs(paths))
    while pending:
        ref = pending.pop()
        _, _, kind, name = ref.split("/", 3)  # "#/components/<kind>/<name>"
        if name in kept.get(kind, {}):
            continue
        target = components[kind][name]
        kept.setdefault(kind, {})[name] = target
        pending.extend(_refs(target))
    out = {k: v for k, v in document.items() if k not in ("paths", "components")}
    out["paths"] = paths
    # security schemes are referenced by name, not by $ref
    if "securitySchemes" in components:
        kept["securitySchemes"] = components["securitySchemes"]
    out["components"] = {kind: dict(sorted(kept[kind].items())) for kind in sorted(kept)}
    return out


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    document = full_document()
    return {name: render(split(document, prefix)) for name, prefix in VERSIONS.items()}


def _history(path: Path) -> list[tuple[str, str]]:
    """(commit, text) of each distinct version of ``path``, newest first: the working
    tree's, then the committed ones."""
    rel = path.relative_to(ROOT).as_posix()
    versions: list[tuple[str, str]] = []
    if path.exists():
        versions.append(("working tree", path.read_text()))
    try:
        commits = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "log", f"-{MAX_HISTORY}", "--format=%h", "--", rel],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return versions
    for commit in commits:
        shown = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "show", f"{commit}:{rel}"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0 and all(shown.stdout != text for _, text in versions):
            versions.append((commit, shown.stdout))
    return versions


def breaking(base: str, revision: str) -> tuple[bool, str]:
    """Whether ``revision`` breaks ``base`` (Optic's breaking-changes rules) and its report."""
    if not OPTIC.exists():
        raise SystemExit(f"{OPTIC} is missing: run `make api-contract` (npm ci in {TOOL_DIR})")
    with tempfile.TemporaryDirectory(prefix="openapi-gate-") as tmp:
        work = Path(tmp)
        (work / "base.json").write_text(base)
        (work / "revision.json").write_text(revision)
        (work / "optic.yml").write_text("ruleset:\n  - breaking-changes\n")
        env = {
            **os.environ,
            # offline: no telemetry, no update check, no error reporting
            "OPTIC_TELEMETRY_LEVEL": "off",
            "OPTIC_DISABLE_UPDATE_CHECK": "true",
            "CI": "true",
            "HOME": tmp,
        }
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [str(OPTIC), "diff", "base.json", "revision.json", "--check", "--severity", "error"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    return result.returncode != 0, result.stdout + result.stderr


WITHDRAWN = DOCS / "withdrawn.txt"


def withdrawn() -> set[str]:
    """sha256 digests of committed documents withdrawn before anyone could rely on them
    (``openapi/withdrawn.txt``: ``<sha256> <file> <why>`` a line): never compared against.
    Listing one is a reviewed decision, like any other change of the contract."""
    if not WITHDRAWN.exists():
        return set()
    return {
        line.split()[0]
        for line in WITHDRAWN.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bases(path: Path, revision: str) -> list[tuple[str, str]]:
    """The versions of ``path`` that ``revision`` is checked against (see NEWEST_CHECKED)."""
    skipped = withdrawn()
    different = [
        (where, text)
        for where, text in _history(path)
        if text != revision and digest(text) not in skipped
    ]
    chosen = different[:NEWEST_CHECKED]
    if len(different) > NEWEST_CHECKED:
        chosen.append(different[-1])
    return chosen


def check(generated: dict[str, str]) -> list[str]:
    failures: list[str] = []
    for name, revision in generated.items():
        path = DOCS / f"{name}.json"
        for where, base in bases(path, revision):
            broken, report = breaking(base, revision)
            if broken:
                failures.append(f"{name}: breaking change against {path.name} at {where}\n{report}")
        if not path.exists() or path.read_text() != revision:
            failures.append(
                f"{name}: {path.relative_to(ROOT)} differs from the application's document; "
                "if the change is intended (and not breaking), run "
                "`python -m tests.api_contract.gate --write` and commit it"
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="regenerate the committed files")
    args = parser.parse_args(argv)
    generated = generate()
    if args.write:
        DOCS.mkdir(exist_ok=True)
        for name, text in generated.items():
            (DOCS / f"{name}.json").write_text(text)
            print(f"wrote openapi/{name}.json")
        return 0
    failures = check(generated)
    for failure in failures:
        print(failure, file=sys.stderr)
    if not failures:
        print("API contract: v1 and v2 unchanged or changed compatibly")
    return 1 if failures else 0


if __name__ == "__main__":
    if shutil.which("node") is None:
        sys.exit("node is needed by the API contract gate")
    sys.exit(main())
