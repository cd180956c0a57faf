"""Argo Workflows from the official `argo-workflows` Helm chart (pinned). The server stays ClusterIP with
client-token auth. The stack's default artifact repository (our bucket) is the ConfigMap `artifact-repositories`
in the stack's namespace, never the controller's configuration: a cluster-wide one would make every workflow pod
in every namespace mount our `s3-credentials` Secret name (and archive other teams' logs into our bucket).

What it watches, exactly: chart 1.0.18 with `singleNamespace: false` gives the controller and the server a
ClusterRole and no `--namespaced` flag, so they watch Workflows in every namespace of the cluster (the chart's
`controller.workflowNamespaces` only decides where the chart creates a workflow ServiceAccount and Role, which
this stack makes itself, so it is not set). That is one Argo per cluster, which several pipeline stacks can
share (`argo.install: false` in the others; docs/deploy.md, "Two stacks on one cluster").

The CRDs are kept on destroy (`crds.keep: true`: the chart marks them `helm.sh/resource-policy: keep`, which
pulumi-kubernetes' Chart v4 turns into `retainOnDelete`, provider/pkg/provider/helm/v4/chart.go): deleting a
CRD deletes every Workflow of that kind in the cluster, other teams' included."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import crds
from infra.podspec import S3Access, executor_security, labels
from infra.podspec import pod_security_level as pod_security
from infra.s3identities import ARGO_SERVER_SA, CREDENTIALS_SECRET

REPO = "https://argoproj.github.io/argo-helm"
SERVER_PORT = 2746
# The controller, executor and server images run this release, not the chart's own v4.0.6: the Go module
# proxy serves no v4.0.6, so `make e2e` builds and runs v4.0.7 (e2e/tools.py), and the stack deploys what the
# e2e proved. The chart's CRDs stay the chart's: a patch release keeps the CRD schema.
ARGO_VERSION = "v4.0.7"
RESTRICTION = "Secure"  # the controller's `workflowRestrictions.templateReferencing`
# What the server does with its own account under `client` auth (argo-workflows v4.0.7
# `server/apiserver/argoserver.go`): read and watch its namespace's controller ConfigMap, and record events.
SERVER_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
# And, without `--namespaced`, it caches every namespace's WorkflowTemplates (an informer it syncs before it
# serves at all) and Workflows (the reflector that `ListWorkflows` answers from, after checking the caller's own
# `list` right) with its own account: read-only, cluster-wide (`server/workflow/workflow_server.go`). Measured by
# `make e2e` (e2e/argoserver.py): without the first the server never serves, without the second every list of
# Workflows comes back empty.
SERVER_CLUSTER_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["workflows", "workflowtemplates"], "verbs": ["list", "watch"]},
]


@dataclass(frozen=True, kw_only=True)
class ArgoArgs:
    """What Argo takes, built from the `argo.*` settings and the storage by `infra.program.argo_args`."""

    install: bool  # install the chart; False: use the cluster's own Argo (its Workflow CRDs must exist)
    chart_version: str  # of the `argo-workflows` chart (`1.0.18`)
    argo_namespace: str  # where the chart installs the controller and the server
    namespace: pulumi.Input[str]  # ours: the artifact repository's ConfigMap goes here
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    bucket: str  # the artifact repository's bucket, as configured (`storage.bucket`)
    access: S3Access  # the pipeline role's: the workflow pods archive their logs with it
    server_role_arn: str | None  # under IRSA, the IAM role the server's ServiceAccount assumes; else None
    cron: bool = False  # a scheduled retrain (a CronWorkflow) is declared


def artifact_repository(bucket: str, access: S3Access) -> dict:
    s3: dict = {
        "bucket": bucket,
        "region": access.region,
        "keyFormat": "argo/{{workflow.name}}/{{pod.name}}",
    }
    if access.endpoint:
        url = urlparse(access.endpoint)
        s3["endpoint"] = url.netloc  # Argo wants host:port, TLS from `insecure`
        s3["insecure"] = url.scheme == "http"
    else:
        s3["endpoint"] = f"s3.{access.region}.amazonaws.com"
    if access.secret_name:
        s3["accessKeySecret"] = {"name": CREDENTIALS_SECRET, "key": "AWS_ACCESS_KEY_ID"}
        s3["secretKeySecret"] = {"name": CREDENTIALS_SECRET, "key": "AWS_SECRET_ACCESS_KEY"}
    else:
        s3["useSDKCreds"] = True  # IRSA: the workflow pods' ServiceAccount carries the role
    return {"archiveLogs": True, "s3": s3}


def server_account(role_arn: str | None) -> dict:
    account: dict = {"create": True, "name": ARGO_SERVER_SA}
    if role_arn:
        account["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    return account


def chart_values(a: ArgoArgs) -> dict:
    small = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    return {
        # Minified CRDs as plain templates: the "full" CRDs come from a Helm hook Job that downloads them,
        # and pulumi's Chart v4 does not run hooks.
        "crds": {"install": True, "full": False, "keep": True},
        "singleNamespace": False,  # cluster-wide: see the module docstring
        "images": {"tag": ARGO_VERSION},
        "controller": {
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            # Workflows only run a WorkflowTemplate, unchanged while they run, and (argo-workflows >= 4.0.5,
            # `workflow/util/merge.go`) may set only allow-listed fields besides its parameters: so whoever
            # may create a Workflow cannot pick its ServiceAccount, volumes (Secrets) or pod spec.
            "workflowRestrictions": {"templateReferencing": RESTRICTION},
            # The chart's containers are non-root, drop ALL and forbid escalation; with a seccomp profile the
            # pods meet Pod Security "restricted", which the argo namespace enforces.
            "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        },
        # We create the pipeline ServiceAccount and its Role ourselves (namespace component).
        "workflow": {"serviceAccount": {"create": False}, "rbac": {"create": False}},
        "executor": {"resources": small, "securityContext": executor_security()},
        "server": {
            "serviceType": "ClusterIP",
            # The name the IRSA role trusts; under IRSA the server reads archived logs (`argo/`) with it.
            "serviceAccount": server_account(a.server_role_arn),
            "authModes": ["client"],
            "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            # TLS with the certificate the server makes itself at start (the chart's probes follow), and not
            # the chart's ClusterRole (every Secret in the cluster, Workflows everywhere): with `client` auth
            # each request runs with the caller's token, and the server's own account needs only `SERVER_RULES`
            # and the reads of `SERVER_CLUSTER_RULES`.
            "secure": True,
            "rbac": {"create": False},
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
        },
    }


def artifact_repositories(a: ArgoArgs, parent: pulumi.Resource) -> k8s.core.v1.ConfigMap:
    """Argo reads a namespace's own default artifact repository from its ConfigMap `artifact-repositories`."""
    return k8s.core.v1.ConfigMap(
        "artifact-repositories",
        metadata={
            "name": "artifact-repositories",
            "namespace": a.namespace,
            "labels": labels(a.instance, "argo"),
            "annotations": {"workflows.argoproj.io/default-artifact-repository": "default"},
        },
        data={"default": yaml.safe_dump(artifact_repository(a.bucket, a.access), sort_keys=True)},
        opts=pulumi.ResourceOptions(parent=parent),
    )


class Argo(pulumi.ComponentResource):
    """`ready`: what a Workflow or WorkflowTemplate waits for (the chart, or the reads of the cluster's Argo
    CRDs when `argo.install` is false)."""

    def __init__(self, name: str, *, args: ArgoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Argo", name, None, opts)
        self.server_service = "argo-workflows-server"
        self.chart: k8s.helm.v4.Chart | None = None
        repositories = artifact_repositories(args, self)
        if not args.install:
            # A scheduled retrain (`retrain.schedule`) is a CronWorkflow: the cluster's Argo must serve that too.
            needed = crds.ARGO + (crds.ARGO_CRON if args.cron else ())
            self.ready: list[pulumi.Resource] = crds.require(
                "argo.install", needed, pulumi.ResourceOptions(parent=self)
            )
            self.ready.append(repositories)
            self.register_outputs({})
            return
        ns = k8s.core.v1.Namespace(
            "argo-namespace",
            metadata={"name": args.argo_namespace, "labels": pod_security("restricted")},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.chart = k8s.helm.v4.Chart(
            "argo-workflows",
            chart="argo-workflows",
            version=args.chart_version,
            repository_opts={"repo": REPO},
            namespace=args.argo_namespace,
            values=chart_values(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        meta = {"name": ARGO_SERVER_SA, "namespace": args.argo_namespace, "labels": labels(args.instance, "argo")}
        role = k8s.rbac.v1.Role(
            "role-argo-server",
            metadata=meta,
            rules=SERVER_RULES,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        binding = k8s.rbac.v1.RoleBinding(
            "rolebinding-argo-server",
            metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ARGO_SERVER_SA},
            subjects=[{"kind": "ServiceAccount", "name": ARGO_SERVER_SA, "namespace": args.argo_namespace}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
        )
        cluster_role = k8s.rbac.v1.ClusterRole(
            "clusterrole-argo-server",
            metadata={"name": ARGO_SERVER_SA, "labels": labels(args.instance, "argo")},
            rules=SERVER_CLUSTER_RULES,
            opts=pulumi.ResourceOptions(parent=self),
        )
        cluster_binding = k8s.rbac.v1.ClusterRoleBinding(
            "clusterrolebinding-argo-server",
            metadata={"name": ARGO_SERVER_SA, "labels": labels(args.instance, "argo")},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ARGO_SERVER_SA},
            subjects=[{"kind": "ServiceAccount", "name": ARGO_SERVER_SA, "namespace": args.argo_namespace}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_role]),
        )
        self.ready = [self.chart, repositories, role, binding, cluster_role, cluster_binding]
        self.register_outputs({})
