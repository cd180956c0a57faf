"""Storage mode `aws`: an S3 bucket (public access blocked, encrypted, TLS only, old runs expire; versioned
and kept on destroy in prod) and a least-privilege IAM policy, given to pods as an IAM user's access key in
a Secret or through IRSA."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pulumi

from infra.config import oidc_issuer
from infra.podspec import CREDENTIALS_SECRET, SERVICE_ACCOUNTS, S3Access

if TYPE_CHECKING:
    from infra.storage import Storage


def bucket_policy_statements(bucket_arn: str) -> list[dict]:
    """The pipeline's rights: list and read/write objects in this bucket, nothing else."""
    return [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [bucket_arn]},
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": [f"{bucket_arn}/*"],
        },
    ]


def declare(c: Storage) -> None:
    """An S3 bucket on AWS and the IAM access to it (an IAM user key in a Secret, or IRSA)."""
    import pulumi_aws as aws

    cfg, s = c.cfg, c.cfg.storage
    provider = aws.Provider("aws", region=s.region, opts=pulumi.ResourceOptions(parent=c))
    on_aws = pulumi.ResourceOptions(parent=c, provider=provider)
    keep = pulumi.ResourceOptions(protect=s.protect, retain_on_delete=s.protect)
    bucket = aws.s3.Bucket(
        "bucket",
        bucket=s.bucket,
        force_destroy=not s.protect,
        tags={"project": cfg.project, "stack": cfg.stack},
        opts=pulumi.ResourceOptions.merge(on_aws, keep),
    )
    c.bucket = bucket.bucket
    after_bucket = pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=[bucket]))
    ownership = aws.s3.BucketOwnershipControls(
        "bucket-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=on_aws,
    )
    public_block = aws.s3.BucketPublicAccessBlock(
        "bucket-public-access-block",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=after_bucket,
    )
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        "bucket-encryption",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                "bucket_key_enabled": True,
            }
        ],
        opts=on_aws,
    )
    # S3 rejects concurrent changes to one bucket's configuration; the policy goes after the block.
    tls_only = aws.s3.BucketPolicy(
        "bucket-tls-only",
        bucket=bucket.id,
        policy=bucket.arn.apply(
            lambda arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [arn, f"{arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            )
        ),
        opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=[public_block])),
    )
    versioning = None
    if s.versioning:
        versioning = aws.s3.BucketVersioning(
            "bucket-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=on_aws,
        )
    rules = [
        {
            "id": "expire-old-runs",
            "status": "Enabled",
            "filter": {"prefix": "runs/"},
            "expiration": {"days": s.runs_expire_days},
        },
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        },
    ]
    if s.versioning:
        rules.append(
            {
                "id": "expire-old-versions",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "noncurrent_version_expiration": {"noncurrent_days": 30},
            }
        )
    lifecycle = aws.s3.BucketLifecycleConfiguration(
        "bucket-lifecycle",
        bucket=bucket.id,
        rules=rules,
        opts=pulumi.ResourceOptions.merge(
            on_aws, pulumi.ResourceOptions(depends_on=[r for r in (versioning, tls_only) if r])
        ),
    )
    policy = aws.iam.Policy(
        "bucket-access",
        name=f"{cfg.project}-{cfg.stack}-{cfg.namespace}-bucket"[:128],
        description=f"read/write objects in the {cfg.project} bucket of stack {cfg.stack}",
        policy=bucket.arn.apply(
            lambda arn: json.dumps({"Version": "2012-10-17", "Statement": bucket_policy_statements(arn)})
        ),
        opts=on_aws,
    )
    c.ready = [bucket, ownership, public_block, encryption, tls_only, lifecycle]
    if s.credentials == "irsa":
        _irsa(c, aws, policy, on_aws)
        secret_name = None
    else:
        user = aws.iam.User("pipeline-user", name=f"{cfg.project}-{cfg.stack}-{cfg.namespace}"[:64], opts=on_aws)
        attach = aws.iam.UserPolicyAttachment(
            "pipeline-user-policy", user=user.name, policy_arn=policy.arn, opts=on_aws
        )
        key = aws.iam.AccessKey("pipeline-user-key", user=user.name, opts=on_aws)
        c.ready.append(c.secret(key.id, key.secret, {"depends_on": [attach]}))
        secret_name = CREDENTIALS_SECRET
    c.access = S3Access(bucket=c.bucket, region=s.region, endpoint=None, secret_name=secret_name)


def _irsa(c: Storage, aws, policy, on_aws: pulumi.ResourceOptions) -> None:
    """A role trusted by the cluster's OIDC provider for our ServiceAccounts."""
    cfg = c.cfg
    arn = cfg.storage.oidc_provider_arn
    issuer = oidc_issuer(arn)
    subjects = [f"system:serviceaccount:{cfg.namespace}:{sa}" for sa in SERVICE_ACCOUNTS]
    # The ServiceAccounts (namespace component) carry this role's ARN, computed from the same config.
    c.role = aws.iam.Role(
        "pipeline-role",
        name=cfg.irsa_role_name,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                f"{issuer}:aud": "sts.amazonaws.com",
                                f"{issuer}:sub": subjects,
                            }
                        },
                    }
                ],
            }
        ),
        opts=on_aws,
    )
    c.ready.append(
        aws.iam.RolePolicyAttachment("pipeline-role-policy", role=c.role.name, policy_arn=policy.arn, opts=on_aws)
    )
