"""TensorBoard (the TF-free image: it reads `s3://` itself through boto3) on every run's logs under
`s3://<bucket>/runs/`, live while training writes them; a ClusterIP Service and a readiness probe."""

from __future__ import annotations

from typing import Any

import pulumi

from infra import component
from infra.config import StackConfig
from infra.podspec import TMP_VOLUME, S3Access, container, labels, pod_security
from infra.workload import deployment_with_service

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
        board = container(
            "tensorboard",
            cfg.image.tensorboard,
            cfg.image.pull_policy,
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
        self.deployment, self.service = deployment_with_service(
            self,
            cfg.stack,
            "tensorboard",
            namespace,
            {
                "serviceAccountName": "tensorboard",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [board],
                "volumes": [TMP_VOLUME],
            },
            [("http", PORT)],
            template_metadata={"labels": labels(cfg.stack, "tensorboard", s3=True)},
            depends_on=component.depends_on(opts),
        )
        self.url = f"http://tensorboard.{cfg.namespace}.svc:{PORT}"
        self.register_outputs({"url": self.url})
