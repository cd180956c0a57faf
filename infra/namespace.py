"""The namespace, its ServiceAccounts and RBAC, and a default-deny NetworkPolicy with the allows the pipeline
needs (DNS, the object store, the API server for Argo's executor, TF's gRPC between replicas, Argo's server to
MinIO for archived logs, Fluid's loader to its cache, and serving/TensorBoard only from `access.fromNamespace`).
tests/infra/test_connectivity.py checks the result path by path with a NetworkPolicy analyzer."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from infra.apiserver import apiserver_egress
from infra.podspec import (
    ANYWHERE,
    CLUSTER_DNS,
    DNS_PORTS,
    EXECUTOR_SA,
    EXECUTOR_TOKEN_SECRET,
    OFF_NODE,
    S3_LABEL,
    labels,
    selector,
)
from infra.s3identities import SERVICE_ACCOUNTS
from infra.serving import REST_PORT, SYNC_METRICS_PORT

WORKFLOW_POD = {"matchExpressions": [{"key": "workflows.argoproj.io/workflow", "operator": "Exists"}]}
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set on every namespace by the API server (Kubernetes >= 1.22)
# The server pods' `app.kubernetes.io/name` in chart argo-workflows 1.0.18 (`argo-workflows.selectorLabels` in
# templates/_helpers.tpl: `<chart name>-<server.name>`, server.name defaulting to "server").
ARGO_SERVER = "argo-workflows-server"


@dataclass(frozen=True, kw_only=True)
class NamespaceArgs:
    """What the namespace, its accounts and its NetworkPolicies take, built by `infra.program.namespace_args`."""

    name: str  # the namespace (`namespace`)
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    minio: bool  # the object store is MinIO in this namespace (`storage.mode: minio`): its pods get the S3 traffic
    s3_endpoint: str | None  # otherwise its URL (`storage.endpoint`; None: AWS S3 over HTTPS)
    gpus: int  # per training process (`training.gpus`): NCCL's ports open between training pods when > 0
    proxy_namespace: str | None  # `access.fromNamespace`: may reach serving and TensorBoard; None: nobody
    argo_namespace: str  # where Argo's server runs (`argo.namespace`): it reads archived logs from MinIO
    metrics_namespace: str | None = None  # `metrics.fromNamespace`: its Prometheus may scrape serving; None: nobody
    # ServiceAccount -> the IAM role it assumes (`storage.credentials: irsa`); empty: pods get keys instead
    irsa_role_arns: dict[str, str] = field(default_factory=dict)
    quota: dict = field(default_factory=dict)  # the ResourceQuota's spec (`infra.bounds.quota_spec`)
    limit_range: dict = field(default_factory=dict)  # the LimitRange's spec (`infra.bounds.limit_range_spec`)


class Namespace(pulumi.ComponentResource):
    def __init__(self, name: str, *, args: NamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Namespace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.args = args
        self.namespace = k8s.core.v1.Namespace(
            "namespace",
            metadata={
                "name": args.name,
                "labels": pod_security_labels() | labels(args.instance, "namespace"),
            },
            opts=child,
        )
        # Everything namespaced below reads the name from the resource, so it waits for the namespace.
        self.name: pulumi.Output[str] = self.namespace.metadata.apply(lambda m: m["name"])
        inside = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        self.service_accounts = {}
        for sa in SERVICE_ACCOUNTS:
            meta = {"name": sa, "namespace": self.name, "labels": labels(args.instance, sa)}
            if args.irsa_role_arns:
                meta["annotations"] = {"eks.amazonaws.com/role-arn": args.irsa_role_arns[sa]}
            self.service_accounts[sa] = k8s.core.v1.ServiceAccount(
                f"sa-{sa}", metadata=meta, automount_service_account_token=False, opts=inside
            )
        executor = k8s.core.v1.ServiceAccount(
            f"sa-{EXECUTOR_SA}",
            metadata={"name": EXECUTOR_SA, "namespace": self.name, "labels": labels(args.instance, EXECUTOR_SA)},
            automount_service_account_token=False,
            opts=inside,
        )
        # Kubernetes fills a Secret of this type with the account's token; Argo mounts it into its executor
        # containers by this name.
        token = k8s.core.v1.Secret(
            "secret-executor-token",
            metadata={
                "name": EXECUTOR_TOKEN_SECRET,
                "namespace": self.name,
                "labels": labels(args.instance, EXECUTOR_SA),
                "annotations": {"kubernetes.io/service-account.name": EXECUTOR_SA},
            },
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[executor]),
        )

        # The executor reports results through workflowtaskresults, and the retraining template's resource
        # step creates and watches a TFJob.
        role = k8s.rbac.v1.Role(
            "role-executor",
            metadata={"name": EXECUTOR_SA, "namespace": self.name, "labels": labels(args.instance, EXECUTOR_SA)},
            rules=[
                {
                    "apiGroups": ["argoproj.io"],
                    "resources": ["workflowtaskresults"],
                    "verbs": ["create", "patch"],
                },
                {
                    "apiGroups": ["kubeflow.org"],
                    "resources": ["tfjobs"],
                    "verbs": ["create", "get", "list", "watch", "patch", "delete"],
                },
            ],
            opts=inside,
        )
        binding = k8s.rbac.v1.RoleBinding(
            "rolebinding-executor",
            metadata={"name": EXECUTOR_SA, "namespace": self.name, "labels": labels(args.instance, EXECUTOR_SA)},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EXECUTOR_SA},
            subjects=[{"kind": "ServiceAccount", "name": EXECUTOR_SA, "namespace": args.name}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, executor]),
        )

        # For people who run retrains: bind it to a user or group (docs/deploy.md, "Security").
        self.submitter = k8s.rbac.v1.Role(
            "role-retrain-submitter",
            metadata={"name": SUBMITTER_ROLE, "namespace": self.name, "labels": labels(args.instance, SUBMITTER_ROLE)},
            rules=submitter_rules(),
            opts=inside,
        )

        # The API server's own addresses and port, read from the cluster at preview and up.
        endpoints = k8s.core.v1.Endpoints.get("apiserver-endpoints", "default/kubernetes", opts=child)
        self.policies = [
            self._policy(name, spec, inside)
            for name, spec in network_policies(args, endpoints.subsets.apply(apiserver_egress)).items()
        ]
        # Before any pod: a pod admitted before its LimitRange existed would keep no limits.
        meta = {"name": "kubeflow-e2e-bounds", "namespace": self.name, "labels": labels(args.instance, "bounds")}
        self.bounds = [
            k8s.core.v1.ResourceQuota("quota", metadata=meta, spec=args.quota, opts=inside),
            k8s.core.v1.LimitRange("limitrange", metadata=meta, spec=args.limit_range, opts=inside),
        ]
        # What a pod of ours needs in place before it starts: its account, its rights, its network allows.
        self.ready: list[pulumi.Resource] = [
            self.namespace,
            *self.service_accounts.values(),
            executor,
            token,
            role,
            binding,
            *self.policies,
            *self.bounds,
        ]
        self.register_outputs({"name": self.name})

    def _policy(self, name: str, spec: dict, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            f"netpol-{name}",
            metadata={"name": name, "namespace": self.name, "labels": labels(self.args.instance, "network-policy")},
            spec=spec,
            opts=opts,
        )


SUBMITTER_ROLE = "retrain-submitter"


def submitter_rules() -> list[dict]:
    """What `argo submit -n NS --from workflowtemplate/retrain-mnist --watch` needs, plus following the run
    (`argo logs`, the TFJob) and stopping or deleting it, and nothing else: no Secrets, no pods or TFJobs of
    one's own. The CLI without an Argo server (argo-workflows v4.0.6 `pkg/apiclient/argo-kube-client.go`,
    `server/workflow/workflow_server.go` SubmitWorkflow) reads the WorkflowTemplate, validates and creates the
    Workflow in the namespace; it uses ClusterWorkflowTemplates only where the user may read them."""
    read = ["get", "list", "watch"]
    return [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": read},
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": [*read, "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": read},
        {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": read},
    ]


def pod_security_labels() -> dict[str, str]:
    """Pod Security Admission: every pod in our namespace meets "restricted", in every stack. Fluid's cache
    runtime (which needs privileged FUSE) lives in its own namespace (`infra.fluid`)."""
    return {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


def s3_egress(a: NamespaceArgs) -> list[dict]:
    """Where the object store is: MinIO pods in the namespace, or any address but the link-local ones (cloud
    metadata) on the endpoint's port."""
    if a.minio:
        return [
            {
                "to": [{"podSelector": {"matchLabels": selector("minio")}}],
                "ports": [{"protocol": "TCP", "port": 9000}],
            }
        ]
    port = 443
    if a.s3_endpoint:
        url = urlparse(a.s3_endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
    return [{"to": OFF_NODE, "ports": [{"protocol": "TCP", "port": port}]}]


def training_peer_ports(gpus: int) -> list[dict]:
    """The TFJob port; with GPUs also the unprivileged TCP ports, between training pods only: NCCL, which the
    trainer's collectives use on GPUs, opens its bootstrap and data sockets between the processes on ports the
    kernel picks (NCCL has no setting that fixes them)."""
    ports = [{"protocol": "TCP", "port": 2222}]
    if gpus:
        ports.append({"protocol": "TCP", "port": 1024, "endPort": 65535})
    return ports


def network_policies(a: NamespaceArgs, apiserver: pulumi.Input[list] | None = None) -> dict[str, dict]:
    """The namespace's policies; `apiserver`: the egress rules to the API server (`apiserver_egress`), by
    default any address on 443 and 6443."""
    if apiserver is None:
        apiserver = [{"to": ANYWHERE, "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]
    s3_pods = {"matchLabels": {S3_LABEL: "true"}}
    policies: dict[str, dict] = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": CLUSTER_DNS, "ports": DNS_PORTS}],
        },
        "allow-s3": {"podSelector": s3_pods, "policyTypes": ["Egress"], "egress": s3_egress(a)},
        # Argo's executor (init and wait containers) talks to the API server.
        "allow-apiserver": {"podSelector": WORKFLOW_POD, "policyTypes": ["Egress"], "egress": apiserver},
        # TF's collectives: every replica of the TFJob talks to every other on the TFJob port.
        "allow-training-peers": {
            "podSelector": {"matchLabels": selector("training")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": selector("training")}}],
                    "ports": training_peer_ports(a.gpus),
                }
            ],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": selector("training")}}],
                    "ports": training_peer_ports(a.gpus),
                }
            ],
        },
    }
    # Serving and TensorBoard: no ingress by default. `kubectl port-forward` (the documented access) enters the
    # pod through the kubelet, which NetworkPolicy does not govern, and the kubelet's probes are always allowed
    # ("traffic to and from the node where a Pod is running is always allowed": kubernetes.io, Concepts >
    # Network Policies). An authenticating proxy or Ingress controller gets in only from its own namespace.
    if a.proxy_namespace:
        proxy = [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: a.proxy_namespace}}}]
        for name, ports in (("serving", (8500, 8501)), ("tensorboard", (6006,))):
            policies[f"allow-{name}"] = {
                "podSelector": {"matchLabels": selector(name)},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": proxy, "ports": [{"protocol": "TCP", "port": p} for p in ports]}],
            }
    # Prometheus in `metrics.fromNamespace` scrapes the serving pods: TF Serving's endpoint and the sidecar's.
    if a.metrics_namespace:
        policies["allow-metrics-scrape"] = {
            "podSelector": {"matchLabels": selector("serving")},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: a.metrics_namespace}}}],
                "ports": [{"protocol": "TCP", "port": p} for p in (REST_PORT, SYNC_METRICS_PORT)],
            }],
        }
    # Fluid's DataLoad loader runs beside the cache, in `<namespace>-cache`: its policy is there (infra.fluid).
    if a.minio:
        policies["allow-minio"] = {
            "podSelector": {"matchLabels": selector("minio")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": s3_pods},
                        # Argo's server reads the archived step logs from the artifact repository (our bucket).
                        {
                            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: a.argo_namespace}},
                            "podSelector": {"matchLabels": {"app.kubernetes.io/name": ARGO_SERVER}},
                        },
                    ],
                    "ports": [{"protocol": "TCP", "port": 9000}],
                }
            ],
        }
    return policies
