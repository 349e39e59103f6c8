"""The rendered Kubernetes manifests, for the tests of their properties (no cluster, no
network): ``kubectl kustomize`` from the tools' environment (``make deploy-tools``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.support.servers import IN_CI

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

Resource = dict[str, Any]


def kubectl() -> str:
    local = ROOT / ".tools" / "deploy-check" / "bin" / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if found:
        return found
    message = "kubectl not installed: run `make deploy-tools`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def load_all(text: str) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(overlay: str) -> list[Resource]:
    out = subprocess.run(  # noqa: S603 - kubectl on our own manifests
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return load_all(out)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return render(request.param)


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]
