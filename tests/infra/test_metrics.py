"""Metrics in the rendered stack: TF Serving's Prometheus endpoint turned on by its monitoring config, the
sidecar's /metrics port, the scrape annotations, the ServiceMonitor (`metrics.serviceMonitor`) and the
NetworkPolicy that admits the scrape (`metrics.fromNamespace`)."""

from __future__ import annotations

import pytest

from demo.serving import monitoring_path
from infra import kubeapi
from infra.configcheck import ConfigError
from infra.serving import MONITORING_PATH, SYNC_METRICS_PORT

from .conftest import make_config


def containers(rendered) -> dict[str, dict]:
    return {c["name"]: c for c in rendered.one("Deployment", "serving")["spec"]["template"]["spec"]["containers"]}


def test_tf_serving_reads_a_monitoring_config_that_turns_prometheus_on(dev):
    server = containers(dev)["tf-serving"]
    flag = next(a for a in server["args"] if a.startswith("--monitoring_config_file="))
    path = flag.split("=", 1)[1]
    mount = next(m for m in server["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    pod = dev.one("Deployment", "serving")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config = dev.one("ConfigMap", volume["configMap"]["name"])
    text = config["data"][path.rsplit("/", 1)[1]]
    # The same parser the stand-in uses reads the path TF Serving will serve.
    assert monitoring_path(text) == MONITORING_PATH


def test_the_watching_sidecar_serves_metrics_and_the_pod_is_annotated_for_tf_servings(dev):
    sidecar = containers(dev)["sync-model"]
    args = sidecar["args"]
    assert args[args.index("--metrics-port") + 1] == str(SYNC_METRICS_PORT) and "--watch" in args
    assert {"name": "sync-metrics", "containerPort": SYNC_METRICS_PORT} in sidecar["ports"]
    annotations = dev.one("Deployment", "serving")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8501",
                           "prometheus.io/path": MONITORING_PATH}
    ports = {p["name"]: p["port"] for p in dev.one("Service", "serving")["spec"]["ports"]}
    assert ports["sync-metrics"] == SYNC_METRICS_PORT and ports["http"] == 8501


def test_irsa_keeps_its_annotation_beside_the_scrape_ones(renders):
    annotations = renders.variant("prod-irsa").one("Deployment", "serving")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["eks.amazonaws.com/skip-containers"] == "tf-serving"
    assert annotations["prometheus.io/scrape"] == "true"


def test_service_monitor_when_asked_for_scraping_both_endpoints(renders, dev):
    rendered = renders("dev", {"metrics.serviceMonitor": True})
    monitor = rendered.one("ServiceMonitor", "serving")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = rendered.one("Service", "serving")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    names = {p["name"] for p in service["spec"]["ports"]}
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]}
    assert endpoints == {("http", MONITORING_PATH), ("sync-metrics", "/metrics")}
    assert {port for port, _ in endpoints} <= names
    # dev leaves it at auto, and an offline render cannot look for the CRD: none.
    assert dev.find("ServiceMonitor") == [] and renders("dev", {"metrics.serviceMonitor": "false"}).find(
        "ServiceMonitor") == []


def test_auto_without_a_readable_cluster_is_unknown(monkeypatch, tmp_path):
    monkeypatch.delenv(kubeapi.OFFLINE_ENV, raising=False)
    missing = str(tmp_path / "no-kubeconfig")
    assert kubeapi.crd_exists("servicemonitors.monitoring.coreos.com", missing, "nowhere") is None
    monkeypatch.setenv(kubeapi.OFFLINE_ENV, "1")
    assert kubeapi.crd_exists("servicemonitors.monitoring.coreos.com", None, None) is None


@pytest.mark.parametrize(("value", "parsed"), [("auto", "auto"), (True, "true"), ("False", "false")])
def test_service_monitor_setting(value, parsed):
    assert make_config(metrics__serviceMonitor=value).metrics.service_monitor == parsed


def test_service_monitor_setting_refuses_anything_else():
    with pytest.raises(ConfigError) as e:
        make_config(metrics__serviceMonitor="sometimes")
    assert str(e.value) == ("config kubeflow-e2e:metrics.serviceMonitor must be one of auto, true, false "
                            "(sometimes): pulumi config set --path kubeflow-e2e:metrics.serviceMonitor auto")


def test_the_scrape_is_admitted_only_from_the_configured_namespace(renders, dev):
    assert dev.find("NetworkPolicy", "allow-metrics-scrape") == []
    policy = renders("dev", {"metrics.fromNamespace": "monitoring"}).one("NetworkPolicy", "allow-metrics-scrape")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "serving"}}
    [rule] = spec["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8501}, {"protocol": "TCP", "port": SYNC_METRICS_PORT}]
