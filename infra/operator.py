"""Kubeflow training-operator v1.9.x from its pinned upstream kustomize manifests: it still serves TFJob
`kubeflow.org/v1` (Kubeflow Trainer v2 dropped TensorFlow). The standalone overlay installs into the
`kubeflow` namespace and watches every namespace. With `operator.install: false` the cluster's own operator
is used: nothing is installed, and the TFJob CRD is read from the cluster instead (`infra.crds`)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra import crds
from infra.podspec import pod_security_level

NAMESPACE = "kubeflow"  # where the standalone overlay installs the operator

REPO = "github.com/kubeflow/training-operator.git"
OVERLAY = "manifests/overlays/standalone"


def manifests_url(version: str) -> str:
    """The kustomize remote target upstream documents for `kubectl apply --server-side -k`."""
    return f"{REPO}/{OVERLAY}?ref={version}"


@dataclass(frozen=True, kw_only=True)
class TrainingOperatorArgs:
    """The `operator.*` settings, as `infra.program` hands them over."""

    install: bool  # install it; False: use the cluster's own, whose TFJob CRD must exist
    version: str  # the training-operator release (`v1.9.4`): the git ref of its manifests


class TrainingOperator(pulumi.ComponentResource):
    """`ready`: what a TFJob waits for (the installed manifests, or the read of the cluster's TFJob CRD)."""

    def __init__(self, name: str, *, args: TrainingOperatorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:TrainingOperator", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.url = manifests_url(args.version) if args.install else None
        if args.install:
            # kustomize.v2.Directory renders in the provider and applies server-side (the CRDs are too large
            # for client-side apply's last-applied annotation).
            directory = k8s.kustomize.v2.Directory("training-operator", directory=self.url, opts=child)
            # The overlay's Namespace has no Pod Security labels. Its one pod (the operator) runs nothing the
            # baseline level forbids; it sets no seccomp profile or runAsNonRoot, so "restricted" only warns.
            psa = k8s.core.v1.NamespacePatch(
                "kubeflow-namespace-pod-security",
                metadata={"name": NAMESPACE, "labels": pod_security_level("baseline")},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[directory]),
            )
            self.ready: list[pulumi.Resource] = [directory, psa]
        else:
            self.ready = crds.require("operator.install", crds.OPERATOR, child)
        self.register_outputs({"url": self.url or "the cluster's own"})
