"""Storage mode `minio` (the dev default): MinIO in the namespace, with generated credentials, a
PersistentVolumeClaim, a ClusterIP Service, and a bucket-creation Job that also makes one user per role.

Credentials: drawn from Python's `secrets` on every run, into two Secrets that ignore later changes to
`data` and `stringData` (`minio-root`, and `minio-users` with every role MinIO mode can have), so the engine
keeps the first run's values (encrypted in the state) and later runs change nothing. Each role's own Secret takes its
values from `minio-users`' recorded data, so every copy of a key agrees. (pulumi-random did this before; its
provider is not served as a Go module, so `make e2e` could not build it: docs/e2e.md, "End-to-end".)"""

from __future__ import annotations

import base64
import json
import secrets
import string
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from infra.gate import StepGate
from infra.podspec import (
    TMP_VOLUME,
    S3Access,
    container,
    labels,
    pod_security,
)
from infra.s3bucket import bucket_policy_statements
from infra.s3identities import credentials_secret
from infra.storagemode import RoleKey, StorageArgs, StorageMode, role_secret
from infra.workload import deployment_with_service

if TYPE_CHECKING:
    from infra.namespace import Namespace

MINIO_PORT = 9000
# The bucket-creation step. Idempotent, so a re-run (the Job replaced) changes nothing; it also makes one MinIO
# user per role (`s3identities.S3_ROLES`) with that role's policy, so no pod but MinIO's holds the root credentials
# and each pod holds only its own role's key.
MINIO_SETUP = """\
set -eu
until mc alias set local "$S3_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"; do sleep 2; done
mc mb --ignore-existing "local/$BUCKET"
for role in $ROLES; do
  id=$(cat "/users/$role.id")
  mc admin policy create local "$BUCKET-$role" "/policy/$role.json"
  mc admin user add local "$id" "$(cat "/users/$role.key")"
  if [ "$role" = pipeline ]; then  # earlier versions gave the pipeline one read-write policy on everything
    mc admin policy detach local "$BUCKET-rw" --user "$id" >/dev/null 2>&1 || true
  fi
  if ! out=$(mc admin policy attach local "$BUCKET-$role" --user "$id" 2>&1); then
    case "$out" in *already*) ;; *) echo "$out" >&2; exit 1 ;; esac
  fi
done
echo "bucket $BUCKET ready, users: $ROLES"
"""


# Every role MinIO mode can have (`s3identities.s3_roles`; `argo-server` only under IRSA, which MinIO has not):
# generated up front, so a role that appears later (`data.source: volume`) still finds its key.
MINIO_ROLES = ("pipeline", "serving", "tensorboard", "cache")
# Both fields: the provider records `stringData` as `data` in the state, so ignoring `stringData` alone makes
# the next run drop `data` and replace the Secret with new values (found by `make e2e`).
KEEP = {"ignore_changes": ["data", "stringData"]}


def generated_credential() -> tuple[str, str]:
    """A user name (16 lower-case letters and digits; MinIO wants 3+) and a password (40 letters and digits;
    MinIO wants 8+), from `secrets`."""
    lower = string.ascii_lowercase + string.digits
    user = "".join(secrets.choice(lower) for _ in range(16))
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return user, password


def kept(secret: k8s.core.v1.Secret, key: str) -> pulumi.Output[str]:
    """One value of a Secret as the engine recorded it (`data`, base64; under mocks only `stringData`)."""

    def pick(args: list) -> str:
        data, string_data = args
        if data and key in data:
            return base64.b64decode(data[key]).decode()
        return (string_data or {})[key]

    return pulumi.Output.secret(pulumi.Output.all(secret.data, secret.string_data).apply(pick))


def declare(parent: pulumi.Resource, args: StorageArgs, namespace: Namespace) -> StorageMode:
    """MinIO in the namespace: generated credentials, a volume, the server, and the bucket Job, each a child
    of PARENT (the Storage component)."""
    child = pulumi.ResourceOptions(parent=parent)
    ns = namespace.name
    meta = lambda name: {"name": name, "namespace": ns, "labels": labels(args.instance, "minio")}  # noqa: E731

    root_user, root_password = generated_credential()
    root = k8s.core.v1.Secret(
        "secret-minio-root",
        metadata=meta("minio-root"),
        type="Opaque",
        string_data={
            "MINIO_ROOT_USER": pulumi.Output.secret(root_user),
            "MINIO_ROOT_PASSWORD": pulumi.Output.secret(root_password),
        },
        opts=pulumi.ResourceOptions(parent=parent, **KEEP),
    )
    # Every user for the Job; each role's own Secret copies its pair from here.
    users_data: dict[str, pulumi.Input[str]] = {}
    for role in MINIO_ROLES:
        key_id, key = generated_credential()
        users_data[f"{role}.id"] = pulumi.Output.secret(key_id)
        users_data[f"{role}.key"] = pulumi.Output.secret(key)
    users = k8s.core.v1.Secret(
        "secret-minio-users",
        metadata=meta("minio-users"),
        type="Opaque",
        string_data=users_data,
        opts=pulumi.ResourceOptions(parent=parent, **KEEP),
    )
    roles = args.roles
    keys = {role: RoleKey(kept(users, f"{role}.id"), kept(users, f"{role}.key"), []) for role in roles}
    # Our pods' Secrets (the cache's goes to the cache namespace, `infra.fluid`).
    role_secrets = [role_secret(parent, args, role, keys[role], ns) for role in roles if role != "cache"]
    pvc = k8s.core.v1.PersistentVolumeClaim(
        "pvc-minio",
        # Local clusters bind a claim only when its first pod is scheduled (WaitForFirstConsumer), and
        # that pod (MinIO) comes after the claim: don't wait for Bound.
        metadata={**meta("minio-data"), "annotations": {"pulumi.com/skipAwait": "true"}},
        spec={
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.minio_size}},
        },
        opts=child,
    )
    root_env = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": "minio-root", "key": k}}}
        for k in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    ]
    server, service = deployment_with_service(
        parent,
        args.instance,
        "minio",
        ns,
        {
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "containers": [
                container(
                    "minio",
                    args.minio_image,
                    args.pull_policy,
                    args.minio_resources,
                    command=["minio"],
                    args=[
                        "server",
                        "/data",
                        "--address",
                        f":{MINIO_PORT}",
                        "--console-address",
                        ":9001",
                    ],
                    env=[*root_env, {"name": "HOME", "value": "/tmp"}],
                    mounts=[{"name": "data", "mountPath": "/data"}],
                    ports=[{"name": "s3", "containerPort": MINIO_PORT}],
                    readinessProbe={
                        "httpGet": {"path": "/minio/health/ready", "port": MINIO_PORT},
                        "periodSeconds": 5,
                    },
                    livenessProbe={
                        "httpGet": {"path": "/minio/health/live", "port": MINIO_PORT},
                        "periodSeconds": 20,
                    },
                )
            ],
            "volumes": [
                TMP_VOLUME,
                {"name": "data", "persistentVolumeClaim": {"claimName": "minio-data"}},
            ],
        },
        [("s3", MINIO_PORT)],
        strategy={"type": "Recreate"},  # one ReadWriteOnce volume
        depends_on=[root, pvc, *namespace.ready],
        rollout=args.rollout,
    )
    endpoint = f"http://minio.{args.namespace}.svc:{MINIO_PORT}"
    policy = k8s.core.v1.ConfigMap(
        "configmap-minio-policy",
        metadata=meta("minio-bucket-policy"),
        data={
            f"{role}.json": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": bucket_policy_statements(f"arn:aws:s3:::{args.storage.bucket}", role),
                },
                indent=2,
            )
            for role in roles
        },
        opts=child,
    )
    job = k8s.batch.v1.Job(
        "job-minio-bucket",
        # With a rollout gate, awaited by its gate, which also fails fast on a stuck pod (infra.gate).
        metadata={**meta("minio-bucket"),
                  **({"annotations": {"pulumi.com/skipAwait": "true"}} if args.rollout else {})},
        spec={
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": labels(args.instance, "minio-bucket", s3=True)},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [
                        container(
                            "mc",
                            args.mc_image,
                            args.pull_policy,
                            args.bucket_job_resources,
                            command=["/bin/sh", "-c", MINIO_SETUP],
                            env=[
                                {"name": "S3_ENDPOINT", "value": endpoint},
                                {"name": "BUCKET", "value": args.storage.bucket},
                                {"name": "MC_CONFIG_DIR", "value": "/tmp/.mc"},
                                {"name": "ROLES", "value": " ".join(roles)},
                                *root_env,
                            ],
                            mounts=[
                                {"name": "policy", "mountPath": "/policy", "readOnly": True},
                                {"name": "users", "mountPath": "/users", "readOnly": True},
                            ],
                        )
                    ],
                    "volumes": [
                        TMP_VOLUME,
                        {"name": "policy", "configMap": {"name": "minio-bucket-policy"}},
                        {"name": "users", "secret": {"secretName": "minio-users"}},
                    ],
                },
            },
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[server, service, policy, users, *namespace.ready]),
    )
    job_done: pulumi.Resource = job
    if args.rollout:
        job_done = StepGate("gate-job-minio-bucket", job, "Job", ns, "minio-bucket", args.rollout.timeout_s,
                            args.rollout.kubeconfig, args.rollout.context, opts=pulumi.ResourceOptions(parent=parent))
    bucket = pulumi.Output.from_input(args.storage.bucket)
    accesses = {
        role: S3Access(
            bucket=bucket,
            region=args.storage.region,
            endpoint=endpoint,
            secret_name=credentials_secret(role),
        )
        for role in roles
    }
    return StorageMode(bucket=bucket, accesses=accesses, ready=[job_done, *role_secrets], keys=keys)
