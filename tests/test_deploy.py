"""deploy/: the Kubernetes manifest (valid against the Kubernetes schemas; replicas on a
shared PostgreSQL, migrations as a Job, the DICOM port, scrape annotations, probes on the
app's own health routes, limits that leave room for the decode bound), the Prometheus alert
rules and scrape configuration (promtool), and the Grafana dashboard (built on the families
the app exports)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate import validate
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url

from app.config import Settings
from app.metrics import Metrics
from tests.servers import REPO

DEPLOY = REPO / "deploy"
MANIFEST = DEPLOY / "kubernetes.yaml"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "pneumonia-triage.json"
KUBERNETES = "1.37.0"
POOL_CONNECTIONS = 15  # SQLAlchemy's QueuePool per replica: 5, and 10 overflow
# Series Prometheus makes itself, beside the app's.
PROMETHEUS_SERIES = {"up"}


def _documents() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for doc in yaml.safe_load_all(MANIFEST.read_text())}


def _one(kind: str, name: str = "pneumonia-triage") -> dict:
    return _documents()[(kind, name)]


def _container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


def test_manifest_validates_against_the_kubernetes_schemas():
    documents = _documents()
    assert {kind for kind, _ in documents} == {
        "Secret", "Service", "StatefulSet", "Job", "Deployment", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "Ingress"}
    for document in documents.values():
        validate(document, KUBERNETES, strict=True)


def test_probes_use_healthz_and_readyz_and_settings_exist():
    container = _container(_one("Deployment"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    known = {f"PNEUMONIA_{name.upper()}" for name in Settings.model_fields}
    assert set(_env(container)) <= known
    env = _env(container)
    assert env["PNEUMONIA_DECODE_WORKERS"]["value"] == container["resources"]["limits"]["cpu"]
    # Heatmaps: one per two CPUs of the limit, not of the node's cores.
    assert int(env["PNEUMONIA_MAX_CONCURRENT_EXPLANATIONS"]["value"]) == max(
        1, int(container["resources"]["limits"]["cpu"]) // 2)
    assert env["PNEUMONIA_LOG_FORMAT"]["value"] == "json"


def _mib(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_container_memory_is_the_apps_memory_budget():
    """Limit and request are PNEUMONIA_MEMORY_BUDGET_MB, and the settings the manifest gives
    fit in it: the server's share, the bodies in flight and every decode worker's cap
    (Settings derives the cap, or refuses to start)."""
    container = _container(_one("Deployment"))
    given = {name.removeprefix("PNEUMONIA_").lower(): item["value"]
             for name, item in _env(container).items() if "value" in item}
    settings = Settings(**given)
    resources = container["resources"]
    limit = _mib(resources["limits"]["memory"])
    assert limit == _mib(resources["requests"]["memory"]) == settings.memory_budget_mb
    bodies = -(-settings.max_upload_memory_bytes // 2**20)
    workers = settings.decode_workers * settings.decode_memory_mb
    assert settings.server_memory_mb + bodies + workers <= limit


def test_two_or_more_replicas_share_one_postgresql_named_in_a_secret():
    deployment, autoscaler = _one("Deployment"), _one("HorizontalPodAutoscaler")
    assert deployment["spec"]["replicas"] >= 2 and autoscaler["spec"]["minReplicas"] >= 2
    database = _env(_container(deployment))["PNEUMONIA_DATABASE_URL"]["valueFrom"]
    secret = _one("Secret", database["secretKeyRef"]["name"])
    url = make_url(secret["stringData"][database["secretKeyRef"]["key"]])
    assert url.get_backend_name() == "postgresql" and url.drivername == "postgresql+psycopg"
    postgres = _one("StatefulSet", "pneumonia-triage-postgres")
    assert url.host == postgres["spec"]["serviceName"]
    assert ("Service", url.host) in _documents()
    args = _container(postgres)["args"]
    connections = int(args[args.index("-c") + 1].removeprefix("max_connections="))
    assert connections >= autoscaler["spec"]["maxReplicas"] * POOL_CONNECTIONS + 1
    assert _env(_container(postgres))["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"][
        "name"] == secret["metadata"]["name"]


def test_migrations_run_as_a_job_of_the_same_image_on_the_same_database():
    job, deployment = _one("Job", "pneumonia-triage-migrate"), _one("Deployment")
    migrate, app = _container(job), _container(deployment)
    assert migrate["command"] == ["pneumonia-triage", "db", "upgrade"]
    assert migrate["image"] == app["image"]
    assert _env(migrate)["PNEUMONIA_DATABASE_URL"] == _env(app)["PNEUMONIA_DATABASE_URL"]


def test_the_dicom_port_has_a_service_and_every_pod_is_scraped():
    container = _container(_one("Deployment"))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(_env(container)["PNEUMONIA_DICOM_PORT"]["value"]) == ports["dicom"] == 11112
    dicom = _one("Service", "pneumonia-triage-dicom")
    assert [(p["port"], p["targetPort"]) for p in dicom["spec"]["ports"]] == [(11112, "dicom")]
    annotations = _one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true",
                           "prometheus.io/port": str(ports["http"]),
                           "prometheus.io/path": "/metrics"}
    pods = _one("Service", "pneumonia-triage-pods")
    assert pods["spec"]["clusterIP"] == "None" and pods["spec"]["publishNotReadyAddresses"]
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]
    [found] = scrape["dns_sd_configs"]
    assert found["names"][0].startswith("pneumonia-triage-pods.")
    assert found["port"] == ports["http"] and scrape["metrics_path"] == "/metrics"


# --- Prometheus and Grafana ---------------------------------------------------------

def _promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: `make system-packages` installs Debian's prometheus")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_promtool_checks_the_alert_rules_and_the_scrape_configuration():
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_alert_expressions())} rules found" in rules.stdout
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_each_alert_fires_on_its_made_up_history():
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def _exported_series() -> set[str]:
    """Every series name the app's GET /metrics can hold (a counter's `_total`, a
    histogram's `_bucket`, `_sum` and `_count`), whether or not it has samples yet."""
    text = Metrics().text().decode()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {family.name + suffix for family in text_string_to_metric_families(text)
            for suffix in suffixes[family.type]}


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in braces or grouping lists), durations or strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  expr)  # grouping lists: `sum by (le) (x)` is then a call of sum
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name.lower() not in _PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_names_finds_series_and_leaves_the_rest():
    assert metric_names('histogram_quantile(0.95, sum by (le, route) (rate('
                        'http_request_duration_seconds_bucket{route="/predict"}[5m]))) > 2'
                        ) == {"http_request_duration_seconds_bucket"}
    assert metric_names("a > ignoring (model) group_left b and on (job) c == 0") == {
        "a", "b", "c"}


def _alert_expressions() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_names_only_series_the_app_exports(source):
    expressions = _alert_expressions() if source == "alerts" else _dashboard_expressions()
    exported = _exported_series() | PROMETHEUS_SERIES
    assert expressions
    for expr in expressions:
        names = metric_names(expr)
        assert names and names <= exported, (expr, names - exported)


def test_the_dashboard_s_expressions_are_valid_promql(tmp_path):
    """promtool parses each one as a recording rule (Grafana's $__rate_interval as 5m)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}",
         "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(_dashboard_expressions())]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_scrape_target_host_is_the_pods_service():
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["alerts.yml"]
    host = urlsplit("//" + scrape["scrape_configs"][0]["dns_sd_configs"][0]["names"][0])
    assert host.hostname.split(".")[0] == "pneumonia-triage-pods"


def test_the_ingress_limits_each_client_and_lets_a_worklist_through():
    """The edge limits connections and requests per client address (a connection flood is
    stopped there, before the app's CPU), and its body, header and timeout limits let
    through what the app accepts: a 200 MiB worklist, streamed, not buffered."""
    ingress = _one("Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    settings = Settings()
    assert int(notes[prefix + "limit-connections"]) >= 8  # a page's few parallel requests
    assert int(notes[prefix + "limit-rps"]) > 0
    body = notes[prefix + "proxy-body-size"]
    assert body.endswith("m") and int(body[:-1]) * 2**20 > settings.max_batch_bytes
    assert not any(key.endswith("-timeout") and "client" in key for key in notes)  # ConfigMap
    assert notes[prefix + "proxy-request-buffering"] == "off"
    # Behind it, the app reads each client's address from X-Forwarded-For (the login
    # throttle counts clients, not the controller).
    env = _env(_container(_one("Deployment")))
    assert env["PNEUMONIA_FORWARDED_ALLOW_IPS"]["value"]
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = _one("Service")
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
