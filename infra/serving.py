"""Serving: the stock `tensorflow/serving` image reading a local directory. The image has not read `s3://`
since 2.7 (tensorflow/serving#1963), so `sync-model` fills a shared emptyDir: once as an init container
(the newest complete version is there before the server starts) and then as a watching sidecar (new versions
appear atomically; TF Serving polls the base path and switches)."""

from __future__ import annotations

from typing import Any

import pulumi

from infra import component
from infra.config import StackConfig
from infra.podspec import (
    TMP_VOLUME,
    S3Access,
    container,
    labels,
    pod_security,
    trainer_command,
)
from infra.workload import deployment_with_service

GRPC_PORT = 8500
REST_PORT = 8501
MODELS = "/models"


def pod_metadata(cfg: StackConfig) -> dict:
    """The serving pod's labels and, under IRSA, the annotation that keeps the EKS pod identity webhook from
    giving TF Serving's container the role's token and variables (`eks.amazonaws.com/skip-containers`:
    amazon-eks-pod-identity-webhook README and `pkg/handler/handler.go`). Only the sync-model containers read
    S3; TF Serving reads the local copy and gets no credentials in any mode."""
    meta: dict = {"labels": labels(cfg.stack, "serving", s3=True)}
    if cfg.storage.credentials == "irsa":
        meta["annotations"] = {"eks.amazonaws.com/skip-containers": SERVER}
    return meta


SERVER = "tf-serving"


class Serving(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        namespace: pulumi.Input[str],
        access: S3Access,
        model_url: Any,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kubeflow-e2e:infra:Serving", name, None, opts)
        s = cfg.serving
        dest = f"{MODELS}/{s.model_name}"
        models_mount = {"name": "models", "mountPath": MODELS}
        sync_env = access.pod_env(MODEL_URL=model_url)
        sync_args = ["--dest", dest, "--keep", str(s.keep_versions)]

        def sync(name: str, *extra: str) -> dict:
            return container(
                name,
                cfg.image.sidecar,
                cfg.image.pull_policy,
                cfg.resources["sync"],
                command=trainer_command("sync-model"),
                args=[*sync_args, *extra],
                env=sync_env,
                mounts=[models_mount],
            )

        server = container(
            SERVER,
            cfg.image.serving,
            cfg.image.pull_policy,
            cfg.resources["serving"],
            command=["tensorflow_model_server"],
            args=[
                f"--port={GRPC_PORT}",
                f"--rest_api_port={REST_PORT}",
                f"--model_name={s.model_name}",
                f"--model_base_path={dest}",
                f"--file_system_poll_wait_seconds={s.poll_seconds}",
            ],
            mounts=[{**models_mount, "readOnly": True}],
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
        # Without waitForTraining nothing on the serving path is awaited: the Service would be awaited until it
        # has endpoints, i.e. until a serving pod is ready, i.e. until a model exists.
        self.deployment, self.service = deployment_with_service(
            self,
            cfg.stack,
            "serving",
            namespace,
            {
                "serviceAccountName": "serving",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "initContainers": [sync("sync-model-once")],
                "containers": [
                    server,
                    sync("sync-model", "--watch", "--interval", str(s.poll_seconds)),
                ],
                "volumes": [TMP_VOLUME, {"name": "models", "emptyDir": {"sizeLimit": "2Gi"}}],
            },
            [("grpc", GRPC_PORT), ("http", REST_PORT)],
            replicas=s.replicas,
            template_metadata=pod_metadata(cfg),
            annotations=None if s.wait_for_training else {"pulumi.com/skipAwait": "true"},
            depends_on=component.depends_on(opts),
        )
        self.url = f"http://serving.{cfg.namespace}.svc:{REST_PORT}"
        self.register_outputs({"url": self.url})
