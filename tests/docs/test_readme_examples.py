"""The README's shell examples run as written, in order, against a freshly seeded server.

`storefront migrate` and `storefront seed` on a temporary SQLite database (what `make run`
does), `storefront serve` on a free port, then tests/docs/readme_examples.py runs every block
marked ``<!-- run -->`` with bash: any failing command or HTTP error fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.docs.readme_examples import README, ReadmeError, examples, retarget, run, script
from tests.support.servers import cli_env, run_cli, serve, start_localstripe, stop, wait_ready


def _tools_missing() -> str | None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    return f"the README examples need {', '.join(missing)}" if missing else None


def test_the_readme_examples_run_against_a_seeded_server(tmp_path: Path) -> None:
    require_or_skip(_tools_missing())  # skipped locally without jq; CI=true fails instead
    # the payment provider, as `make run` starts it (the Payments examples pay an order)
    emulator = start_localstripe()
    env = cli_env(
        f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}",
        STOREFRONT_PAYMENTS__API_BASE=emulator.url,
        STOREFRONT_PAYMENTS__SECRET_KEY=emulator.SECRET_KEY,
        STOREFRONT_PAYMENTS__WEBHOOK_SECRET=emulator.WEBHOOK_SECRET,
    )
    run_cli(["migrate"], env)
    run_cli(["seed", "--if-empty"], env)
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        # the command docs/operations.md gives, in the server's environment: the CLI examples
        # (`storefront keys ...`) act on its database, as they do on `make run`'s
        done = subprocess.run(  # noqa: S603 - our own script
            [sys.executable, "-m", "tests.docs.readme_examples", "--base-url", base],
            cwd=README.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        output = stop(proc)
        emulator.stop()
    assert done.returncode == 0, (
        f"README examples failed (exit {done.returncode}):\n{done.stderr}\n"
        f"--- stdout:\n{done.stdout}\n--- server:\n{output[-4000:]}"
    )
    # what the examples are there to show, seen in their output
    assert '"email":"customer@storefront.test"' in done.stdout
    assert '"role":"owner"' in done.stdout  # the owner's shops
    assert '"secret":"whsec_' in done.stdout  # the webhook was created (and deleted: curl -f)
    assert '"status":"succeeded"' in done.stdout  # the order was paid through the emulator
    assert len(examples(README.read_text(encoding="utf-8"))) >= 3


def test_the_runner_fails_on_an_http_error_and_names_the_block(tmp_path: Path) -> None:
    require_or_skip(_tools_missing())
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}")
    run_cli(["migrate"], env)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n<!-- run -->\n```sh\ncurl -fsS localhost:8000/livez\n```\n\ntext\n\n"
        "<!-- run -->\n```sh\nmake run\n"
        "curl -fsS localhost:8000/api/v1/users/me -H 'Authorization: Bearer nope'\n"
        "echo not reached\n```\n",
        encoding="utf-8",
    )
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        done = run(readme, base, env=env)
    finally:
        stop(proc)
    assert done.returncode != 0
    assert '"status":"ok"' in done.stdout  # the first block ran against the served instance
    assert "README example at README.md:11 failed" in done.stderr
    assert "401" in done.stderr  # curl -f: "The requested URL returned error: 401"
    assert "not reached" not in done.stdout


def test_a_variable_no_earlier_example_sets_fails_the_run(tmp_path: Path) -> None:
    """What the README had: the webhook example used a `$SHOP` nothing had set."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- run -->\n```sh\nTOKEN=x\n```\n\n<!-- run -->\n```sh\n"
        'echo "$TOKEN"\necho "shops/$SHOP/webhooks"\n```\n',
        encoding="utf-8",
    )

    done = run(readme, "http://127.0.0.1:9")

    assert done.returncode != 0
    assert done.stdout == "x\n"
    assert "SHOP: unbound variable" in done.stderr
    assert "README example at README.md:7 failed" in done.stderr


@pytest.mark.parametrize(
    ("readme", "error"),
    [
        ("<!-- run -->\n```sh\ncurl -s localhost:8000/livez\n```\n", "without -f/--fail"),
        (
            "<!-- run -->\n```sh\nX=$(curl -s localhost:8000/x \\\n  | jq .a)\n```\n",
            "without -f/--fail",
        ),
        ("<!-- run -->\n\n```sh\ntrue\n```\n", "must be followed by a ```sh block"),
        ("<!-- run -->\n```python\nprint()\n```\n", "must be followed by a ```sh block"),
        ("<!-- run -->\n```sh\ntrue\n", "never closed"),
    ],
)
def test_malformed_examples_are_refused_before_anything_runs(readme: str, error: str) -> None:
    with pytest.raises(ReadmeError, match=error):
        examples(readme)


def test_only_marked_blocks_run_dedented_without_make_and_retargeted() -> None:
    readme = (
        "```sh\nmake run\n```\n"
        "- item\n\n  <!-- run -->\n  ```sh\n  make test\n  curl -fsS localhost:8000/livez\n"
        "  curl --fail http://127.0.0.1:8000/readyz | jq .\n  ```\n"
        "```sh\necho unmarked\n```\n"
    )
    found = examples(readme)
    assert [e.line for e in found] == [7]
    assert found[0].code == (
        "curl -fsS localhost:8000/livez\ncurl --fail http://127.0.0.1:8000/readyz | jq ."
    )
    assert retarget(found[0].code, "http://127.0.0.1:5123") == (
        "curl -fsS 127.0.0.1:5123/livez\ncurl --fail http://127.0.0.1:5123/readyz | jq ."
    )
    assert "echo unmarked" not in script(found, "http://127.0.0.1:5123")
