"""The Kubernetes manifest: valid against the Kubernetes schemas, probes on the app's own
health routes, limits that leave room for the decode bound."""

import yaml
from kubernetes_validate import validate

from app.config import Settings
from tests.servers import REPO

MANIFEST = REPO / "deploy" / "kubernetes.yaml"
KUBERNETES = "1.37.0"


def _documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def test_manifest_validates_against_the_kubernetes_schemas():
    documents = _documents()
    assert set(documents) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for document in documents.values():
        validate(document, KUBERNETES, strict=True)


def test_probes_use_healthz_and_readyz_and_settings_exist():
    container = _documents()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    known = {f"PNEUMONIA_{name.upper()}" for name in Settings.model_fields}
    assert {item["name"] for item in container["env"]} <= known
    # Above the 1.74 GiB that benchmarks/load.py measured through 8 x 49 MP 16-bit PNGs.
    assert container["resources"]["limits"]["memory"] == "3Gi"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["PNEUMONIA_DECODE_WORKERS"] == container["resources"]["limits"]["cpu"]
