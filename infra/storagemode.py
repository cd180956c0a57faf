"""The contract between the `Storage` component and its modes (`infra.s3bucket` for `aws`, `infra.minio` for
`minio`, `infra.storage` itself for `external`): each mode is a function `declare(parent, args, ns) ->
StorageMode` taking a `StorageArgs`, that declares its resources as children of `parent` (the Storage
component, so their URNs stay those of Storage's children) and returns what it made; it sets nothing on
its caller. `role_secret` writes a role's keys into a Secret, for the modes and for `Storage.role_secret`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import NamedTuple

import pulumi
import pulumi_kubernetes as k8s

from infra.config import ResourcesConfig, StorageConfig
from infra.podspec import S3Access, labels
from infra.s3identities import credentials_secret
from infra.workload import RolloutGate


@dataclass(frozen=True, kw_only=True)
class StorageArgs:
    """What the `Storage` component and its modes take, built from the config by `infra.program.storage_args`."""

    project: str  # the Pulumi project: with the stack and namespace, the IAM names (`aws`)
    instance: str  # the stack's name (`app.kubernetes.io/instance`, IAM names and tags)
    namespace: str  # our namespace as configured: MinIO's endpoint host and the IAM names
    storage: StorageConfig  # the `storage.*` settings: mode, bucket, region, endpoint, keys, IRSA, bucket rules
    roles: tuple[str, ...]  # the S3 roles this stack gives access to (`s3identities.s3_roles`)
    irsa_subjects: dict[str, tuple[str, str]]  # `irsa`: S3 role -> (namespace, ServiceAccount) its IAM role trusts
    irsa_role_names: dict[str, str]  # `irsa`: S3 role -> its IAM role's name
    minio_size: str  # `minio`: MinIO's PersistentVolumeClaim request (`10Gi`)
    minio_image: str
    mc_image: str  # `minio`: the bucket Job's MinIO client
    pull_policy: str
    minio_resources: ResourcesConfig
    bucket_job_resources: ResourcesConfig  # `minio`: the bucket Job's (the `sync` workload's)
    # `minio`: the MinIO Deployment and the bucket Job are awaited by gates that read this cluster
    # (`infra.workload`); None: by the provider
    rollout: RolloutGate | None = None


class RoleKey(NamedTuple):
    """A role's S3 key: its id, its secret, and what must exist before the key works."""

    key_id: pulumi.Input[str]
    secret: pulumi.Input[str]
    needs: list[pulumi.Resource]


@dataclass
class StorageMode:
    """A storage mode's result: the bucket name, each role's access (`s3identities.s3_roles`), what must exist
    before a pod uses the bucket, and each role's key (every mode but IRSA; empty under IRSA)."""

    bucket: pulumi.Output[str]
    accesses: dict[str, S3Access]
    ready: list[pulumi.Resource]
    keys: dict[str, RoleKey]

    @property
    def access(self) -> S3Access:
        """The pipeline's."""
        return self.accesses["pipeline"]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def role_secret(
    parent: pulumi.Resource,
    args: StorageArgs,
    role: str,
    key: RoleKey,
    namespace: pulumi.Input[str],
    depends_on=(),
    resource_name: str | None = None,
) -> k8s.core.v1.Secret:
    """The Secret holding a role's keys (`s3-credentials` for the pipeline, `s3-credentials-<role>` for the
    others) in NAMESPACE, a child of PARENT (the Storage component)."""
    default = "secret-s3-credentials" if role == "pipeline" else f"secret-s3-credentials-{role}"
    return k8s.core.v1.Secret(
        resource_name or default,
        metadata={
            "name": credentials_secret(role),
            "namespace": namespace,
            "labels": labels(args.instance, "storage"),
        },
        type="Opaque",
        # `data`, not `stringData`: the provider records stringData as data, so a stringData whose values
        # come from another resource's outputs shows a diff (and a replacement) on every run (`make e2e`).
        data={
            "AWS_ACCESS_KEY_ID": pulumi.Output.secret(pulumi.Output.from_input(key.key_id).apply(_b64)),
            "AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(pulumi.Output.from_input(key.secret).apply(_b64)),
        },
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*key.needs, *depends_on],
            # MinIO's generated keys: the engine keeps the first run's values (`infra.minio`).
            ignore_changes=["data", "stringData"] if args.storage.mode == "minio" else None,
        ),
    )
