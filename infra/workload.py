"""One helper for a long-running workload: a Deployment and the ClusterIP Service in front of it (MinIO,
TensorBoard and serving each declare one), its rollout awaited by a gate that fails fast on a stuck pod."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.gate import StepGate
from infra.podspec import labels, selector

ROLLOUT_TIMEOUT_S = 600  # the provider's own default await for a Deployment


@dataclass(frozen=True)
class RolloutGate:
    """The cluster a Deployment's gate reads (the stack's kubeconfig and context) and how long it waits for
    the rollout. The gate stands in for the provider's await, which would hold `pulumi up` for the whole
    timeout on an image that cannot be pulled or a pod no node can take (`infra.gate`, `infra.podstatus`)."""

    kubeconfig: str | None
    context: str | None
    timeout_s: int = ROLLOUT_TIMEOUT_S


def deployment_with_service(
    parent: pulumi.Resource,
    instance: str,
    app: str,
    namespace: pulumi.Input[str],
    pod: dict,
    ports: Sequence[tuple[str, int]],
    *,
    replicas: int = 1,
    template_metadata: dict | None = None,
    strategy: dict | None = None,
    annotations: dict | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    rollout: RolloutGate | None = None,
) -> tuple[k8s.apps.v1.Deployment, k8s.core.v1.Service]:
    """`deployment-<app>` running POD (a pod spec) and `service-<app>` (ClusterIP, each (name, port) of PORTS
    to the same container port), both named APP in NAMESPACE with the app's labels (INSTANCE: the stack) and
    ANNOTATIONS, children of PARENT. The Deployment waits for DEPENDS_ON; the Service waits for the Deployment,
    since a Service is awaited until it has endpoints. The pod template gets TEMPLATE_METADATA (default: the
    app's labels). With ROLLOUT, the Deployment is not awaited by the provider but by a gate
    (`gate-deployment-<app>`), and the Service waits for that gate."""
    meta = {"name": app, "namespace": namespace, "labels": labels(instance, app)}
    if annotations:
        meta = {**meta, "annotations": annotations}
    deployment_meta = meta
    if rollout:
        deployment_meta = {**meta, "annotations": {**(annotations or {}), "pulumi.com/skipAwait": "true"}}
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": selector(app)},
        "template": {"metadata": template_metadata or {"labels": labels(instance, app)}, "spec": pod},
    }
    if strategy:
        spec["strategy"] = strategy
    deployment = k8s.apps.v1.Deployment(
        f"deployment-{app}",
        metadata=deployment_meta,
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    ready: pulumi.Resource = deployment
    if rollout:
        ready = StepGate(
            f"gate-deployment-{app}",
            deployment,
            "Deployment",
            namespace,
            app,
            rollout.timeout_s,
            rollout.kubeconfig,
            rollout.context,
            opts=pulumi.ResourceOptions(parent=parent),
            pod_selector=",".join(f"{k}={v}" for k, v in selector(app).items()),
        )
    service = k8s.core.v1.Service(
        f"service-{app}",
        metadata=meta,
        spec={
            "type": "ClusterIP",
            "selector": selector(app),
            "ports": [{"name": name, "port": port, "targetPort": port} for name, port in ports],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ready]),
    )
    return deployment, service
