"""Fluid (the maintained successor of the seeds' Kube Volume Controller): the Helm chart, a Dataset over
DATA_URL served by an Alluxio runtime in its own namespace, and a DataLoad that preloads it onto the cache
workers. With `data.source: volume` the TFJob mounts, read-only, the PVC of a Dataset in our namespace that
references the cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from infra import crds, gate
from infra.podspec import CLUSTER_DNS, DNS_PORTS, OFF_NODE, S3Access, labels

if TYPE_CHECKING:
    from infra.storage import Storage

REPO = "https://fluid-cloudnative.github.io/charts"
DATASET = "mnist"
MOUNT_PATH = "/data/mnist"
# Ports Fluid allocates to the Alluxio master and workers (the chart's `runtime.alluxio.portRange`, pinned; on
# the container network they are the pods' own ports, open within the cache namespace only).
PORT_RANGE = (20000, 26000)
UFS_READERS = ("alluxio-master", "alluxio-worker")
CONTAINER_NETWORK = "ContainerNetwork"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


@dataclass(frozen=True, kw_only=True)
class FluidArgs:
    """What Fluid and the dataset cache take, built from the `fluid.*` settings by `infra.program.fluid_args`."""

    install: bool  # install the chart; False: use the cluster's own Fluid (its Dataset CRDs must exist)
    chart_version: str  # of the `fluid` chart (`1.0.8`)
    controllers_namespace: str  # where the chart installs Fluid's controllers (`fluid.namespace`)
    cache_namespace: str  # where the cache runtime runs (`<namespace>-cache`: its pods need privileges)
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    replicas: int  # Alluxio cache workers, and the DataLoad's replicas
    cache_size: str  # memory cache per worker (`2Gi`)
    load_timeout_seconds: int  # how long `pulumi up` waits for the DataLoad (data prep's timeout)
    kubeconfig: str | None  # for the gate: the cluster's kubeconfig file (None: the default)
    context: str | None  # for the gate: the kubeconfig context


def tls(access: S3Access) -> bool:
    """Whether the cache must reach S3 over HTTPS: always on AWS (the bucket policy denies requests without
    TLS), and wherever the endpoint URL says https. Alluxio's S3 client speaks plain HTTP unless
    `alluxio.underfs.s3.secure.http.enabled` is true (default false in Alluxio 2.x, `PropertyKey.java`; Fluid
    1.0.8's chart runs Alluxio 2.9.0)."""
    return access.endpoint is None or access.endpoint.startswith("https://")


def dataset_mount(access: S3Access, data_url: str) -> dict:
    options = {
        "alluxio.underfs.s3.endpoint.region": access.region,
        "alluxio.underfs.s3.inherit.acl": "false",
        "alluxio.underfs.s3.secure.http.enabled": "true" if tls(access) else "false",
    }
    if access.endpoint:
        options["alluxio.underfs.s3.endpoint"] = access.endpoint
        options["alluxio.underfs.s3.disable.dns.buckets"] = "true"  # path-style, as S3-compatible servers want
    mount = {"name": DATASET, "mountPoint": data_url, "path": "/", "readOnly": True, "options": options}
    if access.secret_name:
        mount["encryptOptions"] = [
            {"name": name, "valueFrom": {"secretKeyRef": {"name": access.secret_name, "key": key}}}
            for name, key in (
                ("aws.accessKeyId", "AWS_ACCESS_KEY_ID"),
                ("aws.secretKey", "AWS_SECRET_ACCESS_KEY"),
            )
        ]
    return mount


class Fluid(pulumi.ComponentResource):
    """The controllers (chart), or with `fluid.install: false` the reads of the cluster's Fluid CRDs. The
    dataset objects come later, once the data exists: `dataset()`."""

    def __init__(self, name: str, *, args: FluidArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Fluid", name, None, opts)
        self.args = args
        if not args.install:
            self.ready: list[pulumi.Resource] = crds.require(
                "fluid.install", crds.FLUID, pulumi.ResourceOptions(parent=self)
            )
            self.register_outputs({})
            return
        ns = k8s.core.v1.Namespace(
            "fluid-namespace",
            # Stated: Fluid's CSI node plugin is privileged with host paths, by design.
            metadata={"name": args.controllers_namespace, "labels": {PSA_ENFORCE: "privileged"}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.chart = k8s.helm.v4.Chart(
            "fluid",
            chart="fluid",
            version=args.chart_version,
            repository_opts={"repo": REPO},
            namespace=args.controllers_namespace,
            # The CRD-upgrade Job is a Helm hook, which pulumi's Chart v4 does not run; CRDs come from crds/.
            values={
                "crdUpgrade": {"enabled": False},
                "runtime": {"alluxio": {"portRange": f"{PORT_RANGE[0]}-{PORT_RANGE[1]}"}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.ready = [self.chart]
        self.register_outputs({})

    def dataset(
        self,
        namespace: pulumi.Input[str],
        access: S3Access,
        data_url: pulumi.Input[str],
        storage: Storage,
        depends_on: list[pulumi.Resource],
    ) -> list[pulumi.Resource]:
        """The cache, in its own namespace (`FluidArgs.cache_namespace`: Alluxio's master and workers use the host
        network and its FUSE pods are privileged, which our restricted namespace refuses): the Dataset over
        DATA_URL, its AlluxioRuntime and the DataLoad that `pulumi up` waits on through its gate
        (`infra.gate`), plus the cache role's S3 keys (read-only, `data/`) there; `access` is the cache role's.
        In our namespace, a Dataset that references it (`dataset://<cache ns>/mnist`, Fluid's cross-namespace
        sharing: `docs/en/samples/dataset_across_namespace_with_csi.md` at v1.0.8; the dataset controller adds
        its ThinRuntime) gives the TFJob the PVC `mnist`. Returns what the TFJob waits for."""
        a = self.args
        cache_ns = k8s.core.v1.Namespace(
            "cache-namespace",
            metadata={
                "name": a.cache_namespace,
                "labels": {
                    **labels(a.instance, "dataset-cache"),
                    # Stated, not inherited from a cluster default: this namespace needs privileged pods.
                    PSA_ENFORCE: "privileged",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        cache = cache_ns.metadata.apply(lambda m: m["name"])
        policies = [
            k8s.networking.v1.NetworkPolicy(
                f"netpol-cache-{name}",
                metadata={"name": name, "namespace": cache, "labels": labels(a.instance, "network-policy")},
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cache_ns]),
            )
            for name, spec in cache_policies(access).items()
        ]
        ready = [cache_ns, *policies]
        if access.secret_name:
            ready.append(storage.role_secret("cache", namespace=cache, depends_on=[cache_ns]))
        opts = pulumi.ResourceOptions(parent=self, depends_on=[*self.ready, *ready, *depends_on])
        meta = {"name": DATASET, "namespace": cache, "labels": labels(a.instance, "dataset")}
        dataset = k8s.apiextensions.CustomResource(
            "dataset",
            api_version="data.fluid.io/v1alpha1",
            kind="Dataset",
            metadata=meta,
            spec=pulumi.Output.from_input(data_url).apply(
                lambda url: {
                    "mounts": [dataset_mount(access, url)],
                    "accessModes": ["ReadOnlyMany"],
                }
            ),
            opts=opts,
        )
        runtime = k8s.apiextensions.CustomResource(
            "alluxio-runtime",
            api_version="data.fluid.io/v1alpha1",
            kind="AlluxioRuntime",
            metadata=meta,
            # On the container network, not the host's (AlluxioRuntime's default): the namespace's policies then
            # decide who reaches the master and workers (api/v1alpha1/alluxioruntime_types.go, v1.0.8).
            spec={
                "master": {"networkMode": CONTAINER_NETWORK},
                "worker": {"networkMode": CONTAINER_NETWORK},
                "fuse": {"networkMode": CONTAINER_NETWORK},
                "replicas": a.replicas,
                "tieredstore": {
                    "levels": [
                        {
                            "mediumtype": "MEM",
                            "path": "/dev/shm",
                            "quota": a.cache_size,
                            "high": "0.95",
                            "low": "0.7",
                        }
                    ]
                },
            },
            opts=opts,
        )
        load = k8s.apiextensions.CustomResource(
            "dataload",
            api_version="data.fluid.io/v1alpha1",
            kind="DataLoad",
            metadata={
                "name": f"{DATASET}-preload",
                "namespace": cache,
                "labels": labels(a.instance, "dataset"),
                "annotations": {"pulumi.com/skipAwait": "true"},  # awaited by its gate (infra/gate.py)
            },
            spec={
                "dataset": {"name": DATASET, "namespace": a.cache_namespace},
                "loadMetadata": True,
                "target": [{"path": "/", "replicas": a.replicas}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[dataset, runtime]),
        )
        reference = k8s.apiextensions.CustomResource(
            "dataset-reference",
            api_version="data.fluid.io/v1alpha1",
            kind="Dataset",
            metadata={"name": DATASET, "namespace": namespace, "labels": labels(a.instance, "dataset")},
            spec={"mounts": [{"name": DATASET, "mountPoint": f"dataset://{a.cache_namespace}/{DATASET}"}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.ready, dataset, *depends_on]),
        )
        load_gate = gate.StepGate(
            "gate-dataload",
            load,
            "DataLoad",
            cache,
            f"{DATASET}-preload",
            a.load_timeout_seconds,
            a.kubeconfig,
            a.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return [load_gate, reference]


def cache_policies(access: S3Access) -> dict[str, dict]:
    """The cache namespace's NetworkPolicies: deny by default; its pods (the Alluxio master, workers, FUSE and
    the DataLoad's loader, all on the container network) talk to each other only; DNS to the cluster's DNS
    pods; the workers read the bucket on the S3 endpoint's port (never link-local addresses). Nothing outside
    the namespace reaches the cache: Fluid 1.0.8 turns Alluxio's permission checks off
    (`pkg/ddc/alluxio/transform_permission.go`), so reaching it would be reading (or freeing) the dataset."""
    url = urlparse(access.endpoint or "https://s3.amazonaws.com")
    s3_port = url.port or (443 if url.scheme == "https" else 80)
    everyone = {"podSelector": {}}
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-cache": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [everyone]}],
            "egress": [{"to": [everyone]}, {"to": CLUSTER_DNS, "ports": DNS_PORTS}],
        },
        # Only the master (metadata) and the workers (data) read the bucket: `role` as the Alluxio chart of
        # Fluid 1.0.8 labels them (charts/alluxio/templates/{master,worker}/statefulset.yaml).
        "allow-s3": {
            "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": list(UFS_READERS)}]},
            "policyTypes": ["Egress"],
            "egress": [{"to": OFF_NODE, "ports": [{"protocol": "TCP", "port": s3_port}]}],
        },
    }
