"""The GitHub Actions workflows (decision 0164): every action pinned by a full commit digest,
least privilege by default, and the same make targets .ci/run uses, so the two never drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def load(path: Path) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True
    return {("on" if key is True else str(key)): value for key, value in loaded.items()}


def test_there_are_the_three_pipelines() -> None:
    triggers = {path.name: load(path)["on"] for path in WORKFLOWS}
    assert "pull_request" in triggers["pull-request.yml"]
    assert triggers["main.yml"]["push"]["branches"] == ["main"]
    assert "schedule" in triggers["benchmark.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_digest(path: Path) -> None:
    for step in steps(load(path)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']} is not pinned"
    # and the release each digest is, for the reader and for updates
    for line in path.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), line


def test_dependabot_keeps_the_pinned_actions_current() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"]: update for update in config["updates"]}
    assert ecosystems["github-actions"]["directory"] == "/"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_default_permissions_are_read_only(path: Path) -> None:
    assert load(path)["permissions"] == {"contents": "read"}


def test_pull_requests_run_the_make_targets_ci_runs() -> None:
    runs = " ".join(
        step.get("run", "") for step in steps(load(ROOT / ".github/workflows/pull-request.yml"))
    )
    gates = ("lint", "test", "security", "api-contract", "migration-lint", "n-minus-1")
    for target in (*gates, "deploy-check"):
        assert f"make {target}" in runs, target
    ci = (ROOT / ".ci" / "run").read_text()
    for target in (*gates, "deploy-check"):
        assert f"make {target}" in ci, target
    assert "pip-audit" in runs
    assert "osv" in runs


def test_every_make_target_a_workflow_runs_exists_and_is_never_optional() -> None:
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    for path in WORKFLOWS:
        runs = "\n".join(step.get("run", "") for step in steps(load(path)))
        for target in re.findall(r"\bmake ([\w-]+)", runs):
            assert target in defined, f"{path.name}: make {target} is not a Makefile target"
        # a gate run only "when the Makefile has it" passes silently once it is renamed
        assert "make -n" not in runs, f"{path.name}: a make target run only if defined"


# the programs tests look up on the PATH (shutil.which): on GitHub's ubuntu-24.04 image, or
# the Debian/Ubuntu package the pull-request workflow installs for them (with CI=true a
# missing one fails its tests instead of skipping them)
ON_THE_RUNNER_IMAGE = {"git", "make", "node", "kubectl", "chromium", "chromium-browser"}
PACKAGE_OF = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "pgbouncer": "pgbouncer",
    "redis-server": "redis-server",
}


def test_the_pull_request_workflow_installs_every_program_the_tests_need() -> None:
    # the workflow deselects the replica tests (-m "not replica": no second cluster there)
    sources = [path.read_text() for path in (ROOT / "tests").rglob("*.py")]
    needed = {
        name
        for text in sources
        if "mark.replica" not in text
        for name in re.findall(r"shutil\.which\(\"([\w.-]+)\"\)", text)
    }
    assert needed >= {"redis-server", "promtool"}
    workflow = load(ROOT / ".github/workflows/pull-request.yml")
    installs = " ".join(
        step.get("run", "")
        for step in workflow["jobs"]["test"]["steps"]
        if "apt-get" in step.get("run", "")
    )
    installed = set(installs.split("apt-get install", 1)[1].split()) if installs else set()
    for name in sorted(needed - ON_THE_RUNNER_IMAGE):
        assert name in PACKAGE_OF, f"{name}: which package provides it? (PACKAGE_OF)"
        assert PACKAGE_OF[name] in installed, f"{name}: the test job does not install it"


def test_main_builds_signs_and_updates_the_gitops_overlay() -> None:
    workflow = load(ROOT / ".github/workflows/main.yml")
    runs = " ".join(step.get("run", "") for step in steps(workflow))
    assert "make image" in runs
    assert "cosign sign --yes" in runs
    assert "cosign attest --yes --type cyclonedx" in runs
    assert "kustomize edit set image" in runs
    assert workflow["jobs"]["image"]["permissions"]["id-token"] == "write"
    # the name CI rewrites is the one the overlays use
    for overlay in ("dev", "prod"):
        text = (ROOT / "deploy/k8s/overlays" / overlay / "kustomization.yaml").read_text()
        assert "- name: ghcr.io/storefront/storefront" in text
    assert "ghcr.io/storefront/storefront=" in runs


def test_the_gitops_commit_lands_on_main_as_it_is_after_the_build() -> None:
    # main moves while the image builds: a commit made on the built commit is refused
    gitops = load(ROOT / ".github/workflows/main.yml")["jobs"]["gitops"]
    (checkout,) = [step for step in gitops["steps"] if "actions/checkout" in step.get("uses", "")]
    assert checkout["with"]["ref"] == "main"
    runs = " ".join(step.get("run", "") for step in gitops["steps"])
    assert "git pull --rebase origin main" in runs


def github_glob(pattern: str) -> re.Pattern[str]:
    """A workflow path filter as GitHub reads it: ** any characters, * any but /."""
    parts = re.split(r"(\*\*|\*)", pattern)
    table = {"**": ".*", "*": "[^/]*"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts) + r"\Z")


def main_runs_on_push_of(changed: list[str]) -> bool:
    push = load(ROOT / ".github/workflows/main.yml")["on"]["push"]
    ignored = [github_glob(pattern) for pattern in push.get("paths-ignore", [])]
    return any(not any(glob.match(path) for glob in ignored) for path in changed)


def test_a_rollback_commit_is_not_rebuilt_and_redeployed() -> None:
    # reverting a deploy commit changes the overlays only: building main then would make a
    # new image of the code being rolled back and point the overlays at it again
    deploy_commit = [
        "deploy/k8s/overlays/dev/kustomization.yaml",
        "deploy/k8s/overlays/prod/kustomization.yaml",
    ]
    assert not main_runs_on_push_of(deploy_commit)
    # any other change is built and deployed
    assert main_runs_on_push_of(["src/storefront/app.py"])
    assert main_runs_on_push_of(["deploy/k8s/base/api.yaml"])
    assert main_runs_on_push_of([*deploy_commit, "uv.lock"])


def test_the_schedule_runs_the_bench_gate() -> None:
    runs = " ".join(
        step.get("run", "") for step in steps(load(ROOT / ".github/workflows/benchmark.yml"))
    )
    assert "make bench-gate" in runs
