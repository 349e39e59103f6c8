"""Offline checks of the Kubernetes manifests (``make deploy-check``; docs/deploy.md).

Renders every overlay with ``kubectl kustomize``, validates the core resources with
``kubernetes-validate --strict`` (the API's own OpenAPI schemas, shipped in the package) and
every custom resource (Argo CD, Linkerd, External Secrets, Prometheus Operator) against the
JSON Schemas in deploy/k8s/schemas/, written from the CRDs' documented fields: a kind with
no schema fails. The rendered manifests are written to ``--out`` for checkov.

Runs in the tools' environment (.tools/deploy-check: kubectl, kubernetes-validate,
jsonschema, PyYAML), not the app's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
OVERLAYS = ("dev", "prod")
# applied on their own, not through an overlay
STANDALONE = ("argocd/appproject.yaml", "argocd/application.yaml", "jobs/admin-create.yaml")
# API groups whose schemas kubernetes-validate ships
CORE_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}


def group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def schema_path(resource: dict[str, Any]) -> Path:
    group, version = group_version(resource["apiVersion"])
    return HERE / "schemas" / f"{group}_{version}_{resource['kind']}.json"


def render(kubectl: str, overlay: str) -> str:
    return subprocess.run(  # noqa: S603 - kubectl on our own manifests
        [kubectl, "kustomize", str(HERE / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def check_custom(resources: list[dict[str, Any]], source: str) -> list[str]:
    problems = []
    for resource in resources:
        name = f"{source}: {resource['kind']} {resource['metadata'].get('name')}"
        path = schema_path(resource)
        if not path.exists():
            problems.append(f"{name}: no schema ({path.relative_to(HERE)}): write one")
            continue
        validator = Draft202012Validator(json.loads(path.read_text()))
        for error in validator.iter_errors(resource):
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            problems.append(f"{name}: {where}: {error.message}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--validate", default="kubernetes-validate")
    parser.add_argument(
        "--out", type=Path, required=True, help="the rendered manifests, for checkov"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    sources: dict[str, str] = {f"overlays/{o}": render(args.kubectl, o) for o in OVERLAYS}
    sources.update({name: (HERE / name).read_text() for name in STANDALONE})

    problems: list[str] = []
    counts = {"core": 0, "custom": 0}
    with tempfile.TemporaryDirectory() as tmp:
        core_files = []
        for source, text in sources.items():
            docs = [d for d in yaml.safe_load_all(text) if d]
            safe = source.replace("/", "_")
            (args.out / f"{safe}.yaml").write_text(text)
            core = [d for d in docs if group_version(d["apiVersion"])[0] in CORE_GROUPS]
            custom = [d for d in docs if d not in core]
            counts["core"] += len(core)
            counts["custom"] += len(custom)
            core_file = Path(tmp) / f"{safe}.yaml"
            core_file.write_text(yaml.safe_dump_all(core))
            core_files.append(str(core_file))
            problems += check_custom(custom, source)
        # --strict: unknown fields are errors, not ignored
        validated = subprocess.run(  # noqa: S603 - the validator on our own files
            [args.validate, "--strict", "--quiet", *core_files], capture_output=True, text=True
        )
        if validated.returncode != 0:
            problems.append("kubernetes-validate --strict:\n" + validated.stdout + validated.stderr)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(
        f"manifests: {len(OVERLAYS)} overlays rendered; {counts['core']} core resources "
        f"(kubernetes-validate --strict), {counts['custom']} custom resources (JSON Schema): "
        + ("ok" if not problems else f"{len(problems)} problem(s)")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
