"""Serving: the stock `tensorflow/serving` image reading a local directory. The image has not read `s3://`
since 2.7 (tensorflow/serving#1963), so `sync-model` fills a shared emptyDir: once as an init container
(the newest complete version is there before the server starts) and then as a watching sidecar (new versions
appear atomically; TF Serving polls the base path and switches).

Metrics: TF Serving's Prometheus endpoint (`--monitoring_config_file`, on the REST port at MONITORING_PATH) and
the watching sidecar's (`--metrics-port`, `trainer.syncmetrics`); the pod's `prometheus.io/*` annotations name
TF Serving's (the annotation convention takes one endpoint), and a ServiceMonitor, where declared, both."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra import component
from infra.config import ResourcesConfig
from infra.podspec import (
    TMP_VOLUME,
    S3Access,
    container,
    labels,
    pod_security,
    selector,
    trainer_command,
)
from infra.workload import RolloutGate, deployment_with_service

GRPC_PORT = 8500
REST_PORT = 8501
MODELS = "/models"
SYNC_METRICS_PORT = 9102  # the watching sidecar's /metrics
MONITORING_PATH = "/monitoring/prometheus/metrics"  # TF Serving's, on REST_PORT
MONITORING_DIR = "/etc/tf-serving"
MONITORING_CONFIG = "monitoring.config"  # the ConfigMap key: TF Serving's MonitoringConfig, as a text proto
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


@dataclass(frozen=True, kw_only=True)
class ServingArgs:
    """What TF Serving and its sync-model containers need, built from the config by `infra.program`."""

    namespace: pulumi.Input[str]
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    server_image: str  # tensorflow/serving
    sidecar_image: str  # sync-model
    pull_policy: str
    server_resources: ResourcesConfig
    sidecar_resources: ResourcesConfig  # of each sync-model container
    model_name: str
    replicas: int
    poll_seconds: int  # the sidecar's sync interval and TF Serving's file-system poll
    keep_versions: int  # model versions the sidecar keeps on disk
    min_accuracy: str  # the promotion gate: `sync-model --min-accuracy`, as configured
    max_regression: str  # `sync-model --max-regression`, as configured
    public_key: str | None = None  # `sync-model --public-key`: serve only versions signed by its private half
    irsa: bool  # the pod's S3 identity is an IAM role (IRSA), not keys
    awaited: bool  # `pulumi up` awaits the Deployment and Service (only where a model exists by then)
    access: S3Access  # the serving role's S3 access (read models/)
    model_url: pulumi.Input[str]  # s3://<bucket>/models/<model name>
    service_monitor: bool = False  # declare a Prometheus Operator ServiceMonitor for both metrics endpoints
    rollout: RolloutGate | None = None  # where awaited, its rollout awaited by a gate (None: by the provider)


def pod_metadata(instance: str, irsa: bool) -> dict:
    """The serving pod's labels and, under IRSA, the annotation that keeps the EKS pod identity webhook from
    giving TF Serving's container the role's token and variables (`eks.amazonaws.com/skip-containers`:
    amazon-eks-pod-identity-webhook README and `pkg/handler/handler.go`). Only the sync-model containers read
    S3; TF Serving reads the local copy and gets no credentials in any mode."""
    meta: dict = {"labels": labels(instance, "serving", s3=True), "annotations": {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(REST_PORT),
        "prometheus.io/path": MONITORING_PATH,
    }}
    if irsa:
        meta["annotations"]["eks.amazonaws.com/skip-containers"] = SERVER
    return meta


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{MONITORING_PATH}"\n}}\n'


def service_monitor_spec() -> dict:
    """Both endpoints of every serving pod, through the Service's named ports."""
    return {
        "selector": {"matchLabels": selector("serving")},
        "endpoints": [
            {"port": "http", "path": MONITORING_PATH, "interval": "30s"},
            {"port": "sync-metrics", "path": "/metrics", "interval": "30s"},
        ],
    }


SERVER = "tf-serving"
MODELS_SIZE = "2Gi"  # the `models` emptyDir's sizeLimit: past it the kubelet evicts the pod
MODELS_BYTES = 2 * 2**30
# The largest gRPC request TF Serving takes (its default is 2 GiB, `SetMaxMessageSize(INT_MAX)` in
# `model_servers/server.cc`): a batch of 10,000 28x28 float images is ~31 MiB.
MAX_REQUEST_BYTES = 32 * 2**20


class Serving(pulumi.ComponentResource):
    def __init__(self, name: str, *, args: ServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Serving", name, None, opts)
        s = args
        dest = f"{MODELS}/{s.model_name}"
        models_mount = {"name": "models", "mountPath": MODELS}
        sync_env = s.access.pod_env(MODEL_URL=s.model_url)
        # The promotion gate: both containers apply it, so the version the server starts with passed it too.
        # `--max-bytes`: a version that cannot fit the models volume is refused, not fetched until eviction.
        sync_args = ["--dest", dest, "--keep", str(s.keep_versions), "--min-accuracy", s.min_accuracy,
                     "--max-regression", s.max_regression, "--max-bytes", str(MODELS_BYTES)]
        if s.public_key:
            sync_args += ["--public-key", s.public_key]

        def sync(name: str, *extra: str, ports: list | None = None) -> dict:
            return container(
                name,
                s.sidecar_image,
                s.pull_policy,
                s.sidecar_resources,
                command=trainer_command("sync-model"),
                args=[*sync_args, *extra],
                env=sync_env,
                mounts=[models_mount],
                **({"ports": ports} if ports else {}),
            )

        self.monitoring = k8s.core.v1.ConfigMap(
            "configmap-serving-monitoring",
            metadata={"name": "serving-monitoring", "namespace": s.namespace, "labels": labels(s.instance, "serving")},
            data={MONITORING_CONFIG: monitoring_config()},
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )

        server = container(
            SERVER,
            s.server_image,
            s.pull_policy,
            s.server_resources,
            command=["tensorflow_model_server"],
            args=[
                f"--port={GRPC_PORT}",
                f"--rest_api_port={REST_PORT}",
                f"--model_name={s.model_name}",
                f"--model_base_path={dest}",
                f"--file_system_poll_wait_seconds={s.poll_seconds}",
                f"--monitoring_config_file={MONITORING_DIR}/{MONITORING_CONFIG}",
                f"--grpc_channel_arguments=grpc.max_receive_message_length={MAX_REQUEST_BYTES}",
            ],
            mounts=[{**models_mount, "readOnly": True},
                    {"name": "monitoring", "mountPath": MONITORING_DIR, "readOnly": True}],
            ports=[
                {"name": "grpc", "containerPort": GRPC_PORT},
                {"name": "http", "containerPort": REST_PORT},
            ],
            # The model status endpoint answers 200 once a version is loaded.
            readinessProbe={
                "httpGet": {"path": f"/v1/models/{s.model_name}", "port": REST_PORT},
                "periodSeconds": 5,
            },
            livenessProbe={"tcpSocket": {"port": GRPC_PORT}, "periodSeconds": 20, "initialDelaySeconds": 15},
        )
        # Unless a model exists by then (serving.waitForTraining), nothing on the serving path is awaited: the
        # Service would be awaited until it has endpoints, i.e. until a serving pod is ready, i.e. a model exists.
        self.deployment, self.service = deployment_with_service(
            self,
            s.instance,
            "serving",
            s.namespace,
            {
                "serviceAccountName": "serving",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "initContainers": [sync("sync-model-once")],
                "containers": [
                    server,
                    sync("sync-model", "--watch", "--interval", str(s.poll_seconds),
                         "--metrics-port", str(SYNC_METRICS_PORT),
                         ports=[{"name": "sync-metrics", "containerPort": SYNC_METRICS_PORT}]),
                ],
                "volumes": [TMP_VOLUME, {"name": "models", "emptyDir": {"sizeLimit": MODELS_SIZE}},
                            {"name": "monitoring", "configMap": {"name": "serving-monitoring"}}],
            },
            [("grpc", GRPC_PORT), ("http", REST_PORT), ("sync-metrics", SYNC_METRICS_PORT)],
            replicas=s.replicas,
            template_metadata=pod_metadata(s.instance, s.irsa),
            annotations=None if s.awaited else {"pulumi.com/skipAwait": "true"},
            depends_on=[*component.depends_on(opts), self.monitoring],
            rollout=s.rollout if s.awaited else None,
        )
        self.service_monitor = None
        if s.service_monitor:
            self.service_monitor = k8s.apiextensions.CustomResource(
                "servicemonitor-serving",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": "serving", "namespace": s.namespace, "labels": labels(s.instance, "serving")},
                spec=service_monitor_spec(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
            )
        self.register_outputs({})
