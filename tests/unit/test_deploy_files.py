"""deploy/: the Kubernetes manifests against the schemas of a current Kubernetes version
(kubernetes-validate, strict: an unknown field is an error), the ServiceMonitor against its
CRD, deploy/compose.yaml against the Compose specification's schema, and the settings they
name against config.py."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from customer_segments.config import FILE_SUFFIX, SECRETS, Settings, variable_of

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
sys.path.insert(0, str(ROOT / "scripts"))
import local_cluster  # noqa: E402  (scripts/ is not a package: on the path above)


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def kind(name: str) -> dict[str, Any]:
    (found,) = [d for d in manifests() if d["kind"] == name]
    return found


def validate_manifest(document: dict[str, Any]) -> None:
    """kubernetes-validate for Kubernetes' kinds; a ServiceMonitor (a custom resource, which
    kubernetes-validate has no schema for) against its CRD's openAPIV3Schema."""
    if document["kind"] == "ServiceMonitor":
        crd = yaml.safe_load((SCHEMAS / "monitoring.coreos.com_servicemonitors.yaml").read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        assert document["apiVersion"] == f"{crd['spec']['group']}/v1"
        jsonschema.validate(document, version["schema"]["openAPIV3Schema"])
    else:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_the_kubernetes_manifests_are_valid_for_a_current_kubernetes() -> None:
    documents = manifests()
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(
        [
            "Secret",
            "Job",
            "Deployment",
            "Service",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
        ]
    )
    assert kubernetes_validate.latest_version() >= "1.37"
    for document in documents:
        validate_manifest(document)


@pytest.mark.parametrize(
    ("kind_name", "path", "wrong"),
    [
        ("Deployment", ("spec",), {"replica": 3}),  # a misspelt field
        ("Deployment", ("spec", "template", "spec", "containers", 0), {"ports": "50051"}),
        ("ServiceMonitor", ("spec", "endpoints", 0), {"interval": "every 30 seconds"}),
    ],
)
def test_the_validation_catches_a_wrong_manifest(
    kind_name: str, path: tuple[str | int, ...], wrong: dict[str, Any]
) -> None:
    document = copy.deepcopy(kind(kind_name))
    target: Any = document
    for key in path:
        target = target[key]
    target.update(wrong)
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(document)


def test_the_pods_probe_and_are_configured_as_the_readme_says() -> None:
    spec = kind("Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    defaults = Settings.model_fields
    assert ports == {
        "grpc": defaults["grpc_port"].default,
        "http": defaults["http_port"].default,
        "metrics": defaults["metrics_port"].default,
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["grpc"]["port"] == ports["grpc"]
    environment = {e["name"]: e.get("value") for e in container["env"]}
    assert environment["CUSTOMER_SEGMENTS_PG_STATEMENT_CACHE_SIZE"] == "0"
    grpc_service = [
        d for d in manifests() if d["kind"] == "Service" and "grpc" in d["metadata"]["name"]
    ]
    assert grpc_service[0]["spec"]["clusterIP"] == "None"  # headless: clients balance


def _settings_named(text: str) -> set[str]:
    return set(re.findall(r"\bCUSTOMER_SEGMENTS_[A-Z0-9_]+", text))


def test_every_setting_the_deploy_files_name_exists() -> None:
    known = {variable_of(name) for name in Settings.model_fields}
    known |= {variable_of(name) + FILE_SUFFIX for name in SECRETS}
    for path in [*(DEPLOY / "kubernetes").glob("*.yaml"), DEPLOY / "compose.yaml"]:
        unknown = _settings_named(path.read_text()) - known
        assert not unknown, f"{path.name} names settings config.py lacks: {unknown}"


def test_compose_file_follows_the_compose_specification() -> None:
    # Draft 7, as the file's $schema says (in a spelling jsonschema does not recognize).
    validator = jsonschema.Draft7Validator(
        yaml.safe_load((SCHEMAS / "compose-spec.json").read_text())
    )
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    validator.validate(compose)
    assert {"postgres", "pgbouncer", "migrate", "replica1", "replica2", "haproxy"} == set(
        compose["services"]
    )
    broken = copy.deepcopy(compose)
    broken["services"]["haproxy"]["depends_on"] = "replica1"  # a string, not a list
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_the_compose_haproxy_configuration_is_the_clusters_template_rendered() -> None:
    rendered = local_cluster.render_haproxy(
        stats_socket="/tmp/haproxy.sock",
        bind="",
        grpc_port=50051,
        http_port=8080,
        stats_port=8404,
        replicas=[(name, name, 50051, 8080) for name in ("replica1", "replica2")],
    )
    assert (DEPLOY / "haproxy" / "compose.cfg").read_text() == rendered, (
        "deploy/haproxy/compose.cfg is stale: render it again from the template"
    )
