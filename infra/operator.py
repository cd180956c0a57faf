"""Kubeflow training-operator v1.9.x from its pinned upstream kustomize manifests: it still serves TFJob
`kubeflow.org/v1` (Kubeflow Trainer v2 dropped TensorFlow). The standalone overlay installs into the
`kubeflow` namespace and watches every namespace."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig

REPO = "github.com/kubeflow/training-operator.git"
OVERLAY = "manifests/overlays/standalone"


def manifests_url(version: str) -> str:
    """The kustomize remote target upstream documents for `kubectl apply --server-side -k`."""
    return f"{REPO}/{OVERLAY}?ref={version}"


class TrainingOperator(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:TrainingOperator", name, None, opts)
        self.url = manifests_url(cfg.operator_version)
        # kustomize.v2.Directory renders in the provider and applies server-side (the CRDs are too large for
        # client-side apply's last-applied annotation).
        self.manifests = k8s.kustomize.v2.Directory(
            "training-operator", directory=self.url, opts=pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs({"url": self.url})
