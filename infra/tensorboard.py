"""TensorBoard (the TF-free image: it reads `s3://` itself through boto3) on every run's logs under
`s3://<bucket>/runs/`, live while training writes them; a ClusterIP Service and a readiness probe."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import component
from infra.config import StackConfig
from infra.podspec import TMP_VOLUME, S3Access, container, labels, pod_security, selector

PORT = 6006


class TensorBoard(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        namespace: pulumi.Input[str],
        access: S3Access,
        logdir: Any,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kubeflow-e2e:infra:TensorBoard", name, None, opts)
        meta = {"name": "tensorboard", "namespace": namespace, "labels": labels(cfg, "tensorboard")}
        board = container(
            "tensorboard",
            cfg.images.tensorboard,
            cfg,
            cfg.resources["tensorboard"],
            command=pulumi.Output.from_input(logdir).apply(
                lambda d: ["tensorboard", "--logdir", d, "--bind_all", "--port", str(PORT)]
            ),
            env=access.pod_env(boto3_default_chain=True),  # TensorBoard's own S3 reader: plain boto3
            ports=[{"name": "http", "containerPort": PORT}],
            readinessProbe={"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 10},
            livenessProbe={
                "httpGet": {"path": "/", "port": PORT},
                "periodSeconds": 30,
                "initialDelaySeconds": 30,
            },
        )
        self.deployment = k8s.apps.v1.Deployment(
            "deployment-tensorboard",
            metadata=meta,
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector("tensorboard")},
                "template": {
                    "metadata": {"labels": labels(cfg, "tensorboard", s3=True)},
                    "spec": {
                        "serviceAccountName": "tensorboard",
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(),
                        "containers": [board],
                        "volumes": [TMP_VOLUME],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )
        self.service = k8s.core.v1.Service(
            "service-tensorboard",
            metadata=meta,
            spec={
                "type": "ClusterIP",
                "selector": selector("tensorboard"),
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
            },
            # A Service is awaited until it has endpoints: create it once its pods exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
        )
        self.url = f"http://tensorboard.{cfg.namespace}.svc:{PORT}"
        self.register_outputs({"url": self.url})
