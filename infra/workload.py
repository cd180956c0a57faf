"""One helper for a long-running workload: a Deployment and the ClusterIP Service in front of it (MinIO,
TensorBoard and serving each declare one)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from infra.podspec import labels, selector


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
) -> tuple[k8s.apps.v1.Deployment, k8s.core.v1.Service]:
    """`deployment-<app>` running POD (a pod spec) and `service-<app>` (ClusterIP, each (name, port) of PORTS
    to the same container port), both named APP in NAMESPACE with the app's labels (INSTANCE: the stack) and
    ANNOTATIONS, children of PARENT. The Deployment waits for DEPENDS_ON; the Service waits for the Deployment,
    since a Service is awaited until it has endpoints. The pod template gets TEMPLATE_METADATA (default: the
    app's labels)."""
    meta = {"name": app, "namespace": namespace, "labels": labels(instance, app)}
    if annotations:
        meta = {**meta, "annotations": annotations}
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": selector(app)},
        "template": {"metadata": template_metadata or {"labels": labels(instance, app)}, "spec": pod},
    }
    if strategy:
        spec["strategy"] = strategy
    deployment = k8s.apps.v1.Deployment(
        f"deployment-{app}",
        metadata=meta,
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    service = k8s.core.v1.Service(
        f"service-{app}",
        metadata=meta,
        spec={
            "type": "ClusterIP",
            "selector": selector(app),
            "ports": [{"name": name, "port": port, "targetPort": port} for name, port in ports],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[deployment]),
    )
    return deployment, service
