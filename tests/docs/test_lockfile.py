"""The lock file is enforced: an install refuses a pyproject.toml that disagrees with uv.lock.

`uv sync --frozen` installs whatever uv.lock says and never looks at pyproject.toml, so a
dependency added to pyproject.toml without re-locking went unnoticed (and untested). The
Makefile's install step (used by `make run`, `make test` and so by CI) must use `--locked`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"


def _project_copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".tools" / "bin").mkdir(parents=True)
    (tmp_path / ".tools" / "bin" / "uv").symlink_to(UV)
    return tmp_path


def _make_install(project: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    # No UV_OFFLINE: to tell that the lock is stale uv resolves the changed requirement, which
    # reads the registry's metadata (a fresh machine's cache does not hold it). The install
    # itself never starts: the check fails first.
    return subprocess.run(
        ["make", "--no-print-directory", "install"],  # noqa: S607 - make from PATH
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_install_refuses_a_pyproject_that_disagrees_with_the_lock(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.fail("the Makefile bootstraps .tools/bin/uv before the tests run")
    project = _project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    # a dependency that is in the lock only as a transitive one: the lock is now stale
    pyproject.write_text(text.replace('"orjson>=3.10",', '"orjson>=3.10",\n    "anyio>=3",', 1))

    result = _make_install(project)

    assert result.returncode != 0, result.stdout + result.stderr
    assert "needs to be updated" in result.stderr
    assert not (project / ".venv" / ".installed").exists()


def test_the_committed_pyproject_and_lock_agree() -> None:
    result = subprocess.run(  # noqa: S603 - fixed command
        [str(UV), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_bytecode_cache_is_outside_the_folders_install_creates() -> None:
    """The Makefile caches bytecode under PYTHONPYCACHEPREFIX for every process it starts.
    It pointed into .venv/: on a fresh clone the first Python run (uv's bootstrap) created
    .venv/pycache, and `uv sync` then refused .venv as "not a valid Python environment", so
    `make run` and `make test` failed before installing anything."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    shown = subprocess.run(
        [  # noqa: S607 - make from PATH
            "make",
            "-s",
            "--no-print-directory",
            "--eval",
            "show-dirs: ; @echo $(PYTHONPYCACHEPREFIX) $(CURDIR)/$(VENV) $(CURDIR)/$(TOOLS)",
            "show-dirs",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    prefix, *created = (Path(p) for p in shown)
    for folder in created:
        assert not prefix.is_relative_to(folder), (prefix, folder)
