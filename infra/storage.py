"""Storage: the bucket and the credentials to reach it, in one of three modes.

- `aws` (`infra.s3bucket`): an S3 bucket and least-privilege IAM, through an access key or IRSA.
- `external`: an existing S3-compatible endpoint; its keys come from secret config into a Secret.
- `minio` (`infra.minio`): MinIO in the namespace, the dev default.

Whatever the mode, pods get the same `S3Access`: endpoint, region and a Secret name (or IRSA), and
`ready`, what must exist before a pod uses the bucket. Each mode is a function that returns a
`StorageMode` (`infra.storagemode`), which this component reads.
"""

from __future__ import annotations

from dataclasses import replace

import pulumi
import pulumi_kubernetes as k8s

from infra import minio, s3bucket
from infra.namespace import Namespace
from infra.podspec import S3Access
from infra.s3identities import CREDENTIALS_SECRET
from infra.storagemode import RoleKey, StorageArgs, StorageMode, role_secret


class Storage(pulumi.ComponentResource):
    access: S3Access  # the pipeline's
    accesses: dict[str, S3Access]  # per role (`s3identities.s3_roles`)
    bucket: pulumi.Output[str]
    ready: list[pulumi.Resource]  # what must exist before a pod uses the bucket
    keys: dict[str, RoleKey]  # per role, every mode but IRSA

    def __init__(
        self, name: str, *, args: StorageArgs, ns: Namespace, opts: pulumi.ResourceOptions | None = None
    ):
        """`ns`: the Namespace component, whose name and readiness the Secrets and MinIO's pods wait for."""
        super().__init__("kubeflow-e2e:infra:Storage", name, None, opts)
        self.args, self.ns = args, ns
        if args.storage.mode == "aws":
            mode = s3bucket.declare(self, args, ns)
        elif args.storage.mode == "external":
            mode = external(self, args, ns)
        else:
            mode = minio.declare(self, args, ns)
        self.bucket, self.ready, self.keys = mode.bucket, mode.ready, mode.keys
        # A pod using any role's access waits for what the mode declared (bucket, users, Secrets), and gets the
        # stack's checksum setting whatever the mode.
        self.accesses = {role: replace(a, depends_on=list(mode.ready), checksums=args.storage.checksums)
                         for role, a in mode.accesses.items()}
        self.access = self.accesses["pipeline"]
        self.register_outputs({"bucket": self.bucket, "endpoint": self.access.endpoint or ""})

    def role_secret(
        self, role: str, namespace: pulumi.Input[str] | None = None, depends_on=(), resource_name: str | None = None
    ) -> k8s.core.v1.Secret:
        """The Secret holding a role's keys (`s3-credentials` for the pipeline, `s3-credentials-<role>` for
        the others), by default in our namespace; a child of this component."""
        return role_secret(
            self,
            self.args,
            role,
            self.keys[role],
            self.ns.name if namespace is None else namespace,
            depends_on,
            resource_name,
        )


def external(parent: pulumi.Resource, args: StorageArgs, ns: Namespace) -> StorageMode:
    """An existing S3-compatible endpoint: nothing to create but the Secret with its keys. The endpoint
    comes with one key from config, so every role shares it (separate rights need keys made there)."""
    s = args.storage
    bucket = pulumi.Output.from_input(s.bucket)
    keys = {role: RoleKey(s.access_key_id, s.secret_access_key, []) for role in args.roles}
    ready = [role_secret(parent, args, "pipeline", keys["pipeline"], ns.name)]
    access = S3Access(bucket=bucket, region=s.region, endpoint=s.endpoint, secret_name=CREDENTIALS_SECRET)
    return StorageMode(bucket=bucket, accesses={role: access for role in args.roles}, ready=ready, keys=keys)
