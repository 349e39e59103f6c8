"""Properties of the rendered Kubernetes manifests that matter in production (decision 0162):
limits, probes, a non-root read-only container, a grace period above the app's own drain
and shutdown, no secret in the repository, default-deny networking, the mesh's timeouts
above the app's deadline. Every overlay is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from storefront.settings import Settings
from storefront.telemetry.metrics import HTTP_REQUESTS
from tests.deploy.conftest import K8S, Resource, load_all, of_kind, one

WORKLOADS = ("Deployment", "Job")
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY|KEYS|DSN|DATABASE_URL|REDIS_URL|BROKER_URL")
STANDALONE = ("argocd/appproject.yaml", "argocd/application.yaml", "jobs/admin-create.yaml")


def pod_specs(resources: list[Resource]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{r['kind']} {r['metadata']['name']}", r["spec"]["template"]["spec"])
        for r in resources
        if r["kind"] in WORKLOADS
    ]


def standalone() -> list[Resource]:
    return [doc for name in STANDALONE for doc in load_all((K8S / name).read_text())]


def settings_of(resources: list[Resource]) -> dict[str, str]:
    data: dict[str, str] = one(resources, "ConfigMap", config_map_name(resources))["data"]
    return data


def config_map_name(resources: list[Resource]) -> str:
    # an overlay that merges into the ConfigMap gives it a content hash suffix
    names = [r["metadata"]["name"] for r in of_kind(resources, "ConfigMap")]
    assert len(names) == 1, names
    return str(names[0])


def container_env_sources(resources: list[Resource]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{where}/{c['name']}", c)
        for where, spec in pod_specs(resources) + pod_specs(standalone())
        for c in spec["containers"] + spec.get("initContainers", [])
    ]


def test_every_container_has_requests_and_limits(rendered: list[Resource]) -> None:
    for where, container in container_env_sources(rendered):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where}: {bound}"


def test_every_container_runs_non_root_on_a_read_only_root(rendered: list[Resource]) -> None:
    for where, container in container_env_sources(rendered):
        sc = container.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        # the image's user (Containerfile: 10001); never root
        assert sc.get("runAsUser", 0) >= 10000, where


def test_pods_mount_no_service_account_token(rendered: list[Resource]) -> None:
    for sa in of_kind(rendered, "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False
    for where, spec in pod_specs(rendered):
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("serviceAccountName") == "storefront", where


def test_deployments_have_all_three_probes(rendered: list[Resource]) -> None:
    for deployment in of_kind(rendered, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{deployment['metadata']['name']}: {probe}"


def test_api_probes_are_livez_and_readyz(rendered: list[Resource]) -> None:
    api = one(rendered, "Deployment", "storefront-api")["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_grace_period_outlasts_the_pause_the_drain_and_the_shutdown(
    rendered: list[Resource],
) -> None:
    settings = settings_of(rendered)
    defaults = Settings()
    drain = float(
        settings.get(
            "STOREFRONT_OBSERVABILITY__SHUTDOWN_DRAIN_SECONDS",
            defaults.observability.shutdown_drain_seconds,
        )
    )
    graceful = float(
        settings.get("STOREFRONT_GRACEFUL_SHUTDOWN_SECONDS", defaults.graceful_shutdown_seconds)
    )
    jobs = float(
        settings.get(
            "STOREFRONT_JOBS__SHUTDOWN_TIMEOUT_SECONDS", defaults.jobs.shutdown_timeout_seconds
        )
    )
    for name, work in (("storefront-api", drain + graceful), ("storefront-worker", jobs)):
        spec = one(rendered, "Deployment", name)["spec"]["template"]["spec"]
        pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > pause + work, name


def test_no_secret_literal_anywhere(rendered: list[Resource]) -> None:
    assert of_kind(rendered, "Secret") == []
    for cm in of_kind(rendered, "ConfigMap"):
        leaked = [key for key in cm.get("data", {}) if SECRETISH.search(key)]
        assert leaked == [], f"secret-looking settings in a ConfigMap: {leaked}"
    made_by_eso = {
        es["spec"]["target"]["name"] for es in of_kind(rendered + standalone(), "ExternalSecret")
    }
    for where, container in container_env_sources(rendered):
        for env in container.get("env", []):
            assert not ("value" in env and SECRETISH.search(env["name"])), f"{where}: {env}"
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in made_by_eso, where


def test_the_external_secret_covers_every_secret_production_requires(
    rendered: list[Resource],
) -> None:
    (external,) = of_kind(rendered, "ExternalSecret")
    keys = {item["secretKey"] for item in external["spec"]["data"]}
    # Settings refuses production without these (settings.py, _refuse_unsafe_production)
    assert {
        "STOREFRONT_DATABASE_URL",
        "STOREFRONT_AUTH__JWT_SECRET",
        "STOREFRONT_PRIVACY__MASTER_KEYS",
        "STOREFRONT_PRIVACY__BLIND_INDEX_KEY",
        "STOREFRONT_PAYMENTS__SECRET_KEY",
        "STOREFRONT_PAYMENTS__WEBHOOK_SECRET",
    } <= keys
    assert external["spec"]["secretStoreRef"]["kind"] in {"SecretStore", "ClusterSecretStore"}


def test_every_setting_named_is_one_the_app_reads(rendered: list[Resource]) -> None:
    """A misspelt STOREFRONT_* variable is silently ignored: each must be a real setting."""
    (external,) = of_kind(rendered, "ExternalSecret")
    names = set(settings_of(rendered)) | {i["secretKey"] for i in external["spec"]["data"]}
    for name in sorted(n for n in names if n.startswith("STOREFRONT_")):
        path = name.removeprefix("STOREFRONT_").lower().split("__")
        model: Any = Settings
        for part in path:
            assert part in model.model_fields, f"{name}: no setting {part!r}"
            annotation = model.model_fields[part].annotation
            model = annotation if hasattr(annotation, "model_fields") else None
            if model is None:
                break


def test_network_policy_denies_by_default(rendered: list[Resource]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    default = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert default, "no default-deny NetworkPolicy"
    # the API takes traffic only from the ingress controller's namespace and scrapes
    api = one(rendered, "NetworkPolicy", "storefront-api")
    sources = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in api["spec"]["ingress"]
        for peer in rule["from"]
    ]
    assert sorted(sources) == ["ingress-nginx", "monitoring"]


def test_namespace_enforces_restricted_pod_security(rendered: list[Resource]) -> None:
    (namespace,) = of_kind(rendered, "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["annotations"]["config.linkerd.io/default-inbound-policy"] == (
        "all-authenticated"
    )
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


def wave(resource: Resource) -> int:
    annotations = resource["metadata"].get("annotations") or {}
    return int(annotations.get("argocd.argoproj.io/sync-wave", "0"))


def test_migrations_run_after_what_they_need_and_before_the_rollout(
    rendered: list[Resource],
) -> None:
    job = one(rendered, "Job", "storefront-migrate")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    # on a first deploy, the namespace, settings, secrets and network policies exist first
    for kind in ("Namespace", "ServiceAccount", "ConfigMap", "ExternalSecret", "NetworkPolicy"):
        for resource in of_kind(rendered, kind):
            assert wave(resource) < wave(job), f"{kind} {resource['metadata']['name']}"
    # and no pod of the new version starts before the Job has completed
    for resource in rendered:
        if resource["kind"] not in {"Namespace", "ServiceAccount", "ConfigMap"} | {
            "ExternalSecret",
            "NetworkPolicy",
            "Job",
        }:
            assert wave(resource) > wave(job), f"{resource['kind']} {resource['metadata']['name']}"


def test_hpa_scales_on_cpu_and_the_adapters_request_rate(rendered: list[Resource]) -> None:
    hpa = one(rendered, "HorizontalPodAutoscaler", "storefront-api")
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    metric = kinds["Pods"]["pods"]["metric"]["name"]
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "rules.yaml").read_text())
    assert [rule["name"]["as"] for rule in adapter["rules"]["custom"]] == [metric]
    # the adapter reads the counter the app exports (prometheus-client adds _total)
    (family,) = HTTP_REQUESTS.describe()
    (rule,) = adapter["rules"]["custom"]
    assert rule["seriesQuery"].startswith(f"{family.name}_total{{")
    assert hpa["spec"]["minReplicas"] >= 1
    assert of_kind(rendered, "PodDisruptionBudget")


def test_the_alerts_job_label_is_the_one_the_service_monitor_gives(
    rendered: list[Resource],
) -> None:
    """The alerts select the app's scrape job by name (up{job="storefront"}); on Kubernetes
    the ServiceMonitor names the job, by default after each Service: the alert would select
    nothing and never fire."""
    monitoring = K8S.parent / "monitoring" / "prometheus"
    # the app's job outside Kubernetes: the static scrape configuration of its metrics ports
    scrape = yaml.safe_load((monitoring / "scrape.yml").read_text())
    ports = (":9101", ":9102")
    (app_job,) = {
        job["job_name"]
        for job in scrape["scrape_configs"]
        for targets in job.get("static_configs", [])
        for target in targets["targets"]
        if target.endswith(ports)
    }
    alerts = (monitoring / "alerts.yml").read_text()
    assert f'up{{job="{app_job}"}}' in alerts
    (monitor,) = of_kind(rendered, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    endpoint_ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    jobs: dict[str, str] = {}
    for service in of_kind(rendered, "Service"):
        labels = service["metadata"].get("labels", {})
        if not wanted.items() <= labels.items():
            continue
        if not endpoint_ports & {port["name"] for port in service["spec"]["ports"]}:
            continue
        # the Prometheus Operator: the Service's label named by jobLabel, else its name
        name = service["metadata"]["name"]
        jobs[name] = labels.get(monitor["spec"].get("jobLabel", ""), name)
    assert set(jobs) >= {"storefront-api", "storefront-worker-metrics"}, jobs
    assert set(jobs.values()) == {app_job}, jobs


def test_the_alert_rules_load_as_a_prometheus_rule_as_documented() -> None:
    """docs/deploy.md (First deploy, Monitoring) indents alerts.yml under the spec of a
    PrometheusRule: that holds while the file is nothing but rule groups."""
    alerts = yaml.safe_load((K8S.parent / "monitoring" / "prometheus" / "alerts.yml").read_text())
    assert set(alerts) == {"groups"}
    for group in alerts["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.get("name")
    documented = (K8S.parents[1] / "docs" / "deploy.md").read_text()
    assert "sed 's/^/  /' deploy/monitoring/prometheus/alerts.yml" in documented
    assert "kind: PrometheusRule" in documented


def test_the_job_metrics_keep_their_job_label_when_scraped(rendered: list[Resource]) -> None:
    """A scraped label named like a target label ("job") is renamed exported_job unless the
    scrape honours labels; the alerts and the dashboard group the job metrics by job."""
    from prometheus_client.metrics import MetricWrapperBase

    from storefront.telemetry import metrics

    labels = {
        name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for name in value._labelnames
    }
    assert "job" in labels
    (monitor,) = of_kind(rendered, "ServiceMonitor")
    assert all(endpoint.get("honorLabels") is True for endpoint in monitor["spec"]["endpoints"])
    # and outside Kubernetes, the static scrape configuration of the app's metrics ports
    scrape = yaml.safe_load((K8S.parent / "monitoring" / "prometheus" / "scrape.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "storefront"]
    assert job.get("honor_labels") is True
    # honoured labels override the target's: the app must not export the target's identity
    assert not labels & {"instance", "namespace", "pod", "service", "container", "endpoint"}


def test_the_ingress_serves_the_public_url_through_the_mesh(rendered: list[Resource]) -> None:
    """The API is reachable from outside at STOREFRONT_PUBLIC_BASE_URL's host, over TLS,
    through the Service (so the mesh, not nginx, balances, times out and retries)."""
    settings = settings_of(rendered)
    host = urlsplit(settings["STOREFRONT_PUBLIC_BASE_URL"]).hostname
    (ingress,) = of_kind(rendered, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host
    assert [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]] == [host]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = one(rendered, "Service", backend["name"])
    pod_labels = one(rendered, "Deployment", "storefront-api")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= pod_labels["labels"].items()
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
    assert port["targetPort"] == "http"
    # the only client the mesh and the NetworkPolicy admit on the API's port
    assert ingress["spec"]["ingressClassName"] == "nginx"
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/service-upstream"] == "true"
    assert notes["nginx.ingress.kubernetes.io/proxy-next-upstream"] == "off"
    mesh_timeout = max(
        float(route["timeout"].removesuffix("s"))
        for route in of_kind(rendered, "ServiceProfile")[0]["spec"]["routes"]
    )
    assert float(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > mesh_timeout
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    assert int(body.removesuffix("m")) * 1024 * 1024 >= Settings().protection.max_bulk_body_bytes


def test_mesh_timeouts_are_above_the_apps_deadline_and_only_reads_retry(
    rendered: list[Resource],
) -> None:
    namespace = of_kind(rendered, "Namespace")[0]["metadata"]["name"]
    (profile,) = of_kind(rendered, "ServiceProfile")
    assert profile["metadata"]["name"] == f"storefront-api.{namespace}.svc.cluster.local"
    deadline = float(settings_of(rendered)["STOREFRONT_PROTECTION__REQUEST_TIMEOUT_SECONDS"])
    assert profile["spec"]["retryBudget"]["retryRatio"] <= 0.2
    for route in profile["spec"]["routes"]:
        assert float(route["timeout"].removesuffix("s")) > deadline, route["name"]
        if route.get("isRetryable"):
            assert route["condition"].get("method") in {"GET", "HEAD"}, route["name"]
            # 503 (shed, circuit open) and 504 (deadline spent) are never retried
            first = route["responseClasses"][0]
            assert first == {"condition": {"status": {"min": 503, "max": 504}}, "isFailure": False}


def test_argo_cd_syncs_the_prod_overlay_automatically() -> None:
    app = load_all((K8S / "argocd" / "application.yaml").read_text())[0]
    assert app["spec"]["source"]["path"] == "deploy/k8s/overlays/prod"
    assert (K8S.parents[1] / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
    automated = app["spec"]["syncPolicy"]["automated"]
    assert automated["prune"] is True
    assert automated["selfHeal"] is True
    (project,) = load_all((K8S / "argocd" / "appproject.yaml").read_text())
    assert app["spec"]["project"] == project["metadata"]["name"]
    # the HPA owns the API's replicas: ignored in the diff and, which Argo CD does only when
    # told, in the sync (otherwise every deploy resets them to the overlay's count)
    ignored = {(d["kind"], d.get("name")) for d in app["spec"]["ignoreDifferences"]}
    assert ("Deployment", "storefront-api") in ignored
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


def schema_for(resource: Resource) -> Path:
    group, _, version = resource["apiVersion"].rpartition("/")
    return K8S / "schemas" / f"{group}_{version}_{resource['kind']}.json"


def custom(resources: list[Resource]) -> list[Resource]:
    core = {"v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}
    return [r for r in resources if r["apiVersion"] not in core]


def test_custom_resources_match_their_schemas(rendered: list[Resource]) -> None:
    resources = custom(rendered + standalone())
    assert {r["kind"] for r in resources} >= {
        "ExternalSecret",
        "ServiceMonitor",
        "ServiceProfile",
        "Server",
        "AuthorizationPolicy",
        "Application",
        "AppProject",
    }
    for resource in resources:
        schema = json.loads(schema_for(resource).read_text())
        errors = list(Draft202012Validator(schema).iter_errors(resource))
        assert errors == [], f"{resource['kind']}: {[e.message for e in errors]}"


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        # a misspelt field is refused, not ignored
        ("ExternalSecret", lambda r: r["spec"].update(refreshIntervall="1h")),
        ("ServiceProfile", lambda r: r["spec"]["retryBudget"].update(ttl="ten seconds")),
        ("Server", lambda r: r["spec"].update(proxyProtocol="HTTP/3")),
        ("AuthorizationPolicy", lambda r: r["spec"].pop("requiredAuthenticationRefs")),
        ("ServiceMonitor", lambda r: r["spec"]["endpoints"][0].update(interval="fast")),
        ("Application", lambda r: r["spec"]["syncPolicy"]["automated"].update(prun=True)),
    ],
)
def test_schemas_refuse_a_broken_resource(kind: str, mutate: Any) -> None:
    from tests.deploy.conftest import render

    resources = [r for r in custom(render("prod") + standalone()) if r["kind"] == kind]
    broken = json.loads(json.dumps(resources[0]))
    mutate(broken)
    schema = json.loads(schema_for(broken).read_text())
    assert list(Draft202012Validator(schema).iter_errors(broken)), f"{kind}: accepted"
