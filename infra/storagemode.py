"""What a storage mode gives the `Storage` component: each mode (`infra.s3bucket` for `aws`,
`infra.minio` for `minio`, `infra.storage` itself for `external`) is a function
`declare(parent, cfg, ns) -> StorageMode` that declares its resources as children of `parent` (the Storage
component, so their URNs stay those of Storage's children) and returns what it made; it sets nothing on
its caller. `role_secret` writes a role's keys into a Secret, for the modes and for `Storage.role_secret`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import NamedTuple

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig
from infra.podspec import S3Access, labels
from infra.s3identities import credentials_secret


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
    cfg: StackConfig,
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
            "labels": labels(cfg.stack, "storage"),
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
            ignore_changes=["data", "stringData"] if cfg.storage.mode == "minio" else None,
        ),
    )
