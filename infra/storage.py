"""Storage: the bucket and the credentials to reach it, in one of three modes.

- `aws` (`infra.s3bucket`): an S3 bucket and least-privilege IAM, through an access key or IRSA.
- `external`: an existing S3-compatible endpoint; its keys come from secret config into a Secret.
- `minio` (`infra.minio`): MinIO in the namespace, the dev default.

Whatever the mode, pods get the same `S3Access`: endpoint, region and a Secret name (or IRSA), and
`ready`, what must exist before a pod uses the bucket.
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_kubernetes as k8s

from infra import minio, s3bucket
from infra.config import StackConfig
from infra.namespace import Namespace
from infra.podspec import CREDENTIALS_SECRET, S3Access, credentials_secret, labels, s3_roles


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class Storage(pulumi.ComponentResource):
    access: S3Access  # the pipeline's
    accesses: dict[str, S3Access]  # per role (`podspec.s3_roles`)
    bucket: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, ns: Namespace, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Storage", name, None, opts)
        self.cfg, self.ns = cfg, ns
        self.ready: list[pulumi.Resource] = []
        # role -> (access key id, secret key, what the key needs first); every mode but IRSA
        self.keys: dict[str, tuple[pulumi.Input[str], pulumi.Input[str], list[pulumi.Resource]]] = {}
        if cfg.storage.mode == "aws":
            s3bucket.declare(self)
        elif cfg.storage.mode == "external":
            self._external()
        else:
            minio.declare(self)
        for a in self.accesses.values():
            a.depends_on = self.ready
        self.register_outputs({"bucket": self.bucket, "endpoint": self.access.endpoint or ""})

    def role_secret(
        self, role: str, namespace: pulumi.Input[str] | None = None, depends_on=(), resource_name: str | None = None
    ) -> k8s.core.v1.Secret:
        """The Secret holding a role's keys (`s3-credentials` for the pipeline, `s3-credentials-<role>` for
        the others), by default in our namespace."""
        key_id, secret, needs = self.keys[role]
        default = "secret-s3-credentials" if role == "pipeline" else f"secret-s3-credentials-{role}"
        return k8s.core.v1.Secret(
            resource_name or default,
            metadata={
                "name": credentials_secret(role),
                "namespace": self.ns.name if namespace is None else namespace,
                "labels": labels(self.cfg, "storage"),
            },
            type="Opaque",
            # `data`, not `stringData`: the provider records stringData as data, so a stringData whose values
            # come from another resource's outputs shows a diff (and a replacement) on every run (`make e2e`).
            data={
                "AWS_ACCESS_KEY_ID": pulumi.Output.secret(pulumi.Output.from_input(key_id).apply(_b64)),
                "AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(pulumi.Output.from_input(secret).apply(_b64)),
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*needs, *depends_on],
                # MinIO's generated keys: the engine keeps the first run's values (`infra.minio`).
                ignore_changes=["data", "stringData"] if self.cfg.storage.mode == "minio" else None,
            ),
        )

    def _external(self) -> None:
        """An existing S3-compatible endpoint: nothing to create but the Secret with its keys. The endpoint
        comes with one key from config, so every role shares it (separate rights need keys made there)."""
        s = self.cfg.storage
        self.bucket = pulumi.Output.from_input(s.bucket)
        for role in s3_roles(self.cfg):
            self.keys[role] = (s.access_key_id, s.secret_access_key, [])
        self.ready = [self.role_secret("pipeline")]
        self.access = S3Access(bucket=self.bucket, region=s.region, endpoint=s.endpoint, secret_name=CREDENTIALS_SECRET)
        self.accesses = {role: self.access for role in s3_roles(self.cfg)}
