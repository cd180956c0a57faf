"""Storage: the bucket and the credentials to reach it, in one of three modes.

- `aws` (`infra.s3bucket`): an S3 bucket and least-privilege IAM, through an access key or IRSA.
- `external`: an existing S3-compatible endpoint; its keys come from secret config into a Secret.
- `minio` (`infra.minio`): MinIO in the namespace, the dev default.

Whatever the mode, pods get the same `S3Access`: endpoint, region and a Secret name (or IRSA), and
`ready`, what must exist before a pod uses the bucket.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import minio, s3bucket
from infra.config import StackConfig
from infra.namespace import Namespace
from infra.podspec import CREDENTIALS_SECRET, S3Access, labels


class Storage(pulumi.ComponentResource):
    access: S3Access
    bucket: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, ns: Namespace, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Storage", name, None, opts)
        self.cfg, self.ns = cfg, ns
        self.ready: list[pulumi.Resource] = []
        if cfg.storage.mode == "aws":
            s3bucket.declare(self)
        elif cfg.storage.mode == "external":
            self._external()
        else:
            minio.declare(self)
        self.access.depends_on = self.ready
        self.register_outputs({"bucket": self.bucket, "endpoint": self.access.endpoint or ""})

    def secret(
        self,
        key_id: pulumi.Input[str],
        secret: pulumi.Input[str],
        extra=None,
        namespace: pulumi.Input[str] | None = None,
        resource_name: str = "secret-s3-credentials",
    ) -> k8s.core.v1.Secret:
        """The `s3-credentials` Secret pods read their keys from (every mode but IRSA); by default in our
        namespace. The first call's keys are kept for `copy_secret`."""
        if not hasattr(self, "_keys"):
            self._keys = (key_id, secret, extra)
        return k8s.core.v1.Secret(
            resource_name,
            metadata={
                "name": CREDENTIALS_SECRET,
                "namespace": self.ns.name if namespace is None else namespace,
                "labels": labels(self.cfg, "storage"),
            },
            type="Opaque",
            string_data={
                "AWS_ACCESS_KEY_ID": pulumi.Output.secret(key_id),
                "AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(secret),
            },
            opts=pulumi.ResourceOptions(parent=self, **(extra or {})),
        )

    def copy_secret(self, namespace: pulumi.Input[str], resource_name: str, depends_on=()) -> k8s.core.v1.Secret:
        """The same keys as `s3-credentials`, in another namespace (Fluid's cache runtime reads them there)."""
        key_id, secret, extra = self._keys
        extra = dict(extra or {})
        extra["depends_on"] = [*extra.get("depends_on", []), *depends_on]
        return self.secret(key_id, secret, extra, namespace=namespace, resource_name=resource_name)

    def _external(self) -> None:
        """An existing S3-compatible endpoint: nothing to create but the Secret with its keys."""
        s = self.cfg.storage
        self.bucket = pulumi.Output.from_input(s.bucket)
        self.ready = [self.secret(s.access_key_id, s.secret_access_key)]
        self.access = S3Access(bucket=self.bucket, region=s.region, endpoint=s.endpoint, secret_name=CREDENTIALS_SECRET)
