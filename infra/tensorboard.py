"""TensorBoard (the TF-free image: it reads `s3://` itself through boto3) on the stack's run's logs,
`RUN_URL/logs/`, live while training writes them; a ClusterIP Service and a readiness probe."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra import component
from infra.config import ResourcesConfig
from infra.podspec import TMP_VOLUME, S3Access, container, labels, pod_security
from infra.workload import RolloutGate, deployment_with_service

PORT = 6006


@dataclass(frozen=True, kw_only=True)
class TensorBoardArgs:
    """What TensorBoard needs, built from the config by `infra.program`."""

    namespace: pulumi.Input[str]
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    image: str  # the TensorBoard image
    pull_policy: str
    resources: ResourcesConfig
    access: S3Access  # the tensorboard role's S3 access (read runs/)
    logdir: pulumi.Input[str]  # s3://<bucket>/runs/: every run's logs
    rollout: RolloutGate | None = None  # its rollout awaited by a gate (None: by the provider)


class TensorBoard(pulumi.ComponentResource):
    def __init__(self, name: str, *, args: TensorBoardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:TensorBoard", name, None, opts)
        board = container(
            "tensorboard",
            args.image,
            args.pull_policy,
            args.resources,
            command=pulumi.Output.from_input(args.logdir).apply(
                lambda d: ["tensorboard", "--logdir", d, "--bind_all", "--port", str(PORT)]
            ),
            env=args.access.pod_env(boto3_default_chain=True),  # TensorBoard's own S3 reader: plain boto3
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
            args.instance,
            "tensorboard",
            args.namespace,
            {
                "serviceAccountName": "tensorboard",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [board],
                "volumes": [TMP_VOLUME],
            },
            [("http", PORT)],
            template_metadata={"labels": labels(args.instance, "tensorboard", s3=True)},
            depends_on=component.depends_on(opts),
            rollout=args.rollout,
        )
        self.register_outputs({})
