"""Pieces every pod of the stack shares: labels, security contexts, the S3 environment, scratch volumes.

Plain dicts in the Kubernetes wire format (camelCase), so the same code feeds typed resources, custom
resources (whose `spec` pulumi does not convert) and the YAML manifest embedded in the retraining template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.config import ResourcesConfig
from infra.configcheck import NS

UID = 10001  # the user our images create (docker/*.Dockerfile); any non-root UID works for the rest
S3_LABEL = "kubeflow-e2e.io/s3"  # pods allowed to reach the object store (NetworkPolicy)

# Argo's executor (the init and wait containers, and the `resource` step that creates a TFJob) is the only
# holder of an API token: the workflows name it in `executor.serviceAccountName`, and Argo mounts its token from
# the Secret `<name>.service-account-token` into those containers only (argo-workflows v4.0.6
# `workflow/controller/workflowpod.go` setupServiceAccount/newExecContainer, `util/secrets/secret_name.go`).
EXECUTOR_SA = "workflow-executor"
EXECUTOR_TOKEN_SECRET = f"{EXECUTOR_SA}.service-account-token"
# A NetworkPolicy peer for any address, IPv4 and IPv6.
ANYWHERE = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
# Any address but link-local ones, where clouds serve instance metadata and its credentials (169.254.169.254,
# EKS's fd00:ec2::254): the egress to an S3 endpoint outside the cluster.
OFF_NODE = [
    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
    {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::254/128"]}},
]
# The cluster's DNS pods: CoreDNS (or kube-dns) in kube-system carries `k8s-app: kube-dns` on EKS, GKE, AKS,
# kind and kubeadm clusters. Port 53 anywhere else would be a channel out of the cluster.
CLUSTER_DNS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
]
def pod_security_level(enforce: str, warn: str = "restricted") -> dict[str, str]:
    """A namespace's Pod Security Admission labels: `enforce` refuses pods above that level; `warn` and
    `audit` report pods above `warn` without refusing them."""
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/warn": warn,
        "pod-security.kubernetes.io/audit": warn,
    }


DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def labels(instance: str, component: str, s3: bool = False) -> dict[str, str]:
    """The standard labels of one of our objects; `instance`: the stack's name; `s3`: may reach the bucket."""
    out = {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": NS,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "pulumi",
    }
    if s3:
        out[S3_LABEL] = "true"
    return out


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component}


def pod_security(fs_group: bool = True) -> dict:
    ctx: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group:
        ctx["fsGroup"] = UID
    return ctx


def container_security() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def executor_security() -> dict:
    """Argo's executor containers (init, wait, and the main container of a `resource` template): what the
    restricted Pod Security level requires, with a writable root filesystem. `argoexec init` writes a
    resource template's manifest to /tmp/manifest.yaml, and Argo mounts no /tmp into its init container
    (argo-workflows v4.0.6 `workflow/controller/workflowpod.go`; argo-workflows#10787, open), so a read-only
    root fails every `resource` step. Argo's own default leaves the flag off for init and wait for this reason."""
    return {**container_security(), "readOnlyRootFilesystem": False}


CHECKSUM_ENV = ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")
TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


@dataclass
class S3Access:
    """How a pod reaches the bucket: the stack's outputs turned into the trainer's environment contract."""

    bucket: pulumi.Input[str]
    region: str
    endpoint: str | None  # full URL with scheme; None means AWS
    secret_name: str | None  # Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; None means IRSA
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    checksums: str = "when_supported"  # `storage.checksums`

    def env(self) -> list[dict]:
        out: list[dict] = []
        if self.endpoint:
            out.append({"name": "S3_ENDPOINT", "value": self.endpoint})
        out.append({"name": "AWS_REGION", "value": self.region})
        if self.secret_name:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                out.append({"name": key, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": key}}})
        if self.checksums != "when_supported":
            # botocore's own settings (botocore/configprovider.py), read by every boto3 in the pod, ours and
            # TensorBoard's alike; `when_supported` is botocore's default, so a stack that keeps it renders as before.
            for key in CHECKSUM_ENV:
                out.append({"name": key, "value": self.checksums})
        return out

    def pod_env(self, *, boto3_default_chain: bool = False, **urls) -> list[dict]:
        """A pod's whole environment: S3 access, then the given variables (DATA_URL=..., in order), then the
        base variables every pod gets.

        `boto3_default_chain`: the pod's S3 client is one we don't write that builds a plain
        `boto3.client("s3", endpoint_url=$S3_ENDPOINT)` (TensorBoard's S3 reader,
        tensorboard/compat/tensorflow_stub/io/gfile.py). botocore takes that client's region only from
        `AWS_DEFAULT_REGION` (botocore/configprovider.py, `region`), not `AWS_REGION`, so the pod gets both;
        with an `endpoint_url` botocore addresses buckets by path (botocore/args.py, `AWS_S3_FORCE_PATH_STYLE`
        unless `s3.addressing_style` is `virtual`), which `S3_ENDPOINT` already gives."""
        access = self.env()
        if boto3_default_chain:
            at = next(i for i, e in enumerate(access) if e["name"] == "AWS_REGION") + 1
            access.insert(at, {"name": "AWS_DEFAULT_REGION", "value": self.region})
        return [*access, *({"name": k, "value": v} for k, v in urls.items()), *base_env()]

    def url(self, prefix: str) -> pulumi.Output[str]:
        return pulumi.Output.from_input(self.bucket).apply(lambda b: f"s3://{b}/{prefix}")


def base_env() -> list[dict]:
    # HOME on the writable scratch volume: the root filesystem is read-only.
    return [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}]


def trainer_command(*args: str) -> list[str]:
    return ["python", "-m", "trainer", *args]


def container(
    name: str,
    image: str,
    pull_policy: str,
    resources: ResourcesConfig,
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: list | pulumi.Output | None = None,
    mounts: list[dict] | None = None,
    **extra: Any,
) -> dict:
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": pull_policy}
    if command:
        c["command"] = command
    if args:
        c["args"] = args
    if env is not None:
        c["env"] = env
    c["resources"] = resources.k8s()
    c["securityContext"] = container_security()
    c["volumeMounts"] = [TMP_MOUNT, *(mounts or [])]
    c.update(extra)
    return c
