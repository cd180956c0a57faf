"""The CustomResourceDefinitions our objects need, when a platform piece is the cluster's own
(`operator.install`, `argo.install` or `fluid.install` set to false).

Each needed CRD is *read* from the cluster (`CustomResourceDefinition.get`), and the objects of its kinds
depend on that read. The engine reads during `pulumi preview` as well as `pulumi up`, so a cluster without
one of them stops the preview before anything is declared, naming the CRD; the provider's message is
`Preview failed: resource 'tfjobs.kubeflow.org' does not exist` (pulumi/pulumi-kubernetes#1050, and
pulumi/pulumi#3364 for why a program cannot catch it and word it itself). The logical name of the read
(`crd-<crd>-needed-as-<key>-is-false`) says which setting made the stack look for it.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

# What each platform piece serves that the stack's own objects use (group/plural per upstream CRD).
OPERATOR = ("tfjobs.kubeflow.org",)
# The executor of every workflow pod reports through workflowtaskresults.
ARGO = ("workflows.argoproj.io", "workflowtemplates.argoproj.io", "workflowtaskresults.argoproj.io")
ARGO_CRON = ("cronworkflows.argoproj.io",)
FLUID = ("datasets.data.fluid.io", "alluxioruntimes.data.fluid.io", "dataloads.data.fluid.io")


def read_name(crd: str, key: str) -> str:
    return f"crd-{crd}-needed-as-{key}-is-false"


def require(key: str, crds: tuple[str, ...], opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """Reads each CRD from the cluster; returns the reads, for the objects of those kinds to depend on."""
    return [k8s.apiextensions.v1.CustomResourceDefinition.get(read_name(crd, key), crd, opts=opts) for crd in crds]
