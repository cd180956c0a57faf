"""The stack's configuration as one typed, frozen object (`StackConfig`), built by `infra.config.load` from
validated values; the components read only this."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from infra.parse import arn_parts

ARGO_SERVER_SA = "argo-workflows-server"  # pinned in the chart values (infra.argo)


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str

    def k8s(self) -> dict:
        return {
            "requests": {"cpu": self.cpu, "memory": self.memory},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class Storage:
    mode: str
    bucket: str
    region: str
    endpoint: str | None  # external only; minio's is derived from the namespace
    access_key_id: Any  # str or pulumi Output (secret); external only
    secret_access_key: Any
    credentials: str  # access-key | irsa (aws); access-key otherwise
    oidc_provider_arn: str | None
    protect: bool
    versioning: bool
    runs_expire_days: int
    minio_size: str


@dataclass(frozen=True)
class Images:
    trainer: str
    sidecar: str
    tensorboard: str
    serving: str
    minio: str
    mc: str
    pull_policy: str


@dataclass(frozen=True)
class Training:
    run: str
    epochs: int
    batch_size: int
    learning_rate: str
    backoff_limit: int
    timeout_seconds: int


@dataclass(frozen=True)
class Serving:
    wait_for_training: bool
    model_name: str
    replicas: int
    poll_seconds: int
    keep_versions: int


@dataclass(frozen=True)
class Fluid:
    enabled: bool
    install: bool
    chart_version: str
    namespace: str
    cache_size: str
    replicas: int


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str | None  # None: $KUBECONFIG, else ~/.kube/config
    context: str | None


@dataclass(frozen=True)
class StackConfig:
    project: str
    stack: str
    namespace: str
    workers: int
    storage: Storage
    images: Images
    data_prepare_source: str
    data_source: str
    dataprep_timeout_seconds: int
    training: Training
    serving: Serving
    operator_version: str
    argo_chart_version: str
    operator_install: bool
    argo_install: bool
    argo_namespace: str
    fluid: Fluid
    access_from_namespace: str | None
    resources: dict[str, Resources]
    cluster: Cluster = Cluster(None, None)

    # The bucket layout (docs/design.md); the bucket itself may be an Output, so these are plain strings
    # built from the configured name.
    @property
    def data_prefix(self) -> str:
        return "data/mnist"

    @property
    def run_spec(self) -> dict[str, Any]:
        """What shapes a training run: a checkpoint trained under other settings must not be resumed. The
        learning rate is compared as a number (`0.003` and `3e-3` are one spec)."""
        t = self.training
        return {
            "image": self.images.trainer,
            "workers": self.workers,
            "epochs": t.epochs,
            "batchSize": t.batch_size,
            "learningRate": float(t.learning_rate),
            "prepareSource": self.data_prepare_source,
        }

    @property
    def run_digest(self) -> str:
        """8 hex digits of sha256 over `run_spec` as canonical JSON."""
        canonical = json.dumps(self.run_spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        """`<training.run>-<run_digest>`: RUN_URL's last part. Same spec, same run (it resumes); a changed
        spec is a new run that trains from scratch."""
        return f"{self.training.run}-{self.run_digest}"

    @property
    def run_prefix(self) -> str:
        return f"runs/{self.run_id}"

    @property
    def model_prefix(self) -> str:
        return f"models/{self.serving.model_name}"

    @property
    def tfjob_name(self) -> str:
        return f"mnist-{self.training.run}"

    @property
    def irsa_subjects(self) -> dict[str, tuple[str, str]]:
        """S3 role -> the (namespace, ServiceAccount) its IAM role trusts, one each (IRSA)."""
        out = {sa: (self.namespace, sa) for sa in ("pipeline", "serving", "tensorboard")}
        out["argo-server"] = (self.argo_namespace, ARGO_SERVER_SA)
        return out

    @property
    def irsa_role_names(self) -> dict[str, str]:
        """S3 role -> its IAM role's name (the pipeline's as earlier versions named it)."""
        base = f"{self.project}-{self.stack}-{self.namespace}"
        return {
            role: (base if role == "pipeline" else f"{base[: 63 - len(role)]}-{role}")[:64]
            for role in self.irsa_subjects
        }

    def irsa_role_arn(self, role: str) -> str | None:
        """A role's ARN is known from config: a role lives in the account of the OIDC provider it trusts."""
        if self.storage.credentials != "irsa":
            return None
        partition, account = arn_parts(self.storage.oidc_provider_arn or "")
        return f"arn:{partition}:iam::{account}:role/{self.irsa_role_names[role]}"

    @property
    def cache_namespace(self) -> str:
        """Where Fluid's cache runtime runs (`data.source: volume`): its pods need the host network and
        privileged FUSE, which our namespace's restricted Pod Security level refuses."""
        return f"{self.namespace[:57].rstrip('-')}-cache"
