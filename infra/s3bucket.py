"""Storage mode `aws`: an S3 bucket (public access blocked, encrypted, TLS only, old runs expire; versioned
and kept on destroy in prod) and a least-privilege IAM policy, given to pods as an IAM user's access key in
a Secret or through IRSA."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pulumi

from infra.podspec import S3Access
from infra.s3identities import S3_ROLES, credentials_secret, oidc_issuer
from infra.storagemode import RoleKey, StorageArgs, StorageMode, role_secret

if TYPE_CHECKING:
    from infra.namespace import Namespace


def bucket_policy_statements(bucket_arn: str, role: str) -> list[dict]:
    """One role's rights in this bucket (`S3_ROLES`): list under its prefixes, read (and for a writer, write
    and delete) the objects there, nothing else. `s3:prefix` limits what ListObjects may name (AWS: "Amazon
    S3 condition keys"; MinIO supports the same key)."""
    rights = S3_ROLES[role]
    prefixes = rights.get("write", ()) + rights.get("read", ())
    actions = ["s3:GetObject"]
    if "write" in rights:
        actions += ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    return [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [bucket_arn]},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        },
        {"Effect": "Allow", "Action": actions, "Resource": [f"{bucket_arn}/{p}*" for p in prefixes]},
    ]


def policy_document(bucket_arn: str, role: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": bucket_policy_statements(bucket_arn, role)})


def declare(parent: pulumi.Resource, args: StorageArgs, ns: Namespace) -> StorageMode:
    """An S3 bucket on AWS and the IAM access to it (an IAM user key in a Secret, or IRSA), each a child of
    PARENT (the Storage component)."""
    import pulumi_aws as aws

    s = args.storage
    provider = aws.Provider("aws", region=s.region, opts=pulumi.ResourceOptions(parent=parent))
    # A kept bucket keeps everything that hardens it: its public access block, encryption, TLS-only policy,
    # versioning and lifecycle are separate resources, and deleting them on destroy would leave the retained
    # bucket open, unversioned and growing. So every aws.s3 resource gets the bucket's protect/retain.
    keep = pulumi.ResourceOptions(protect=s.protect, retain_on_delete=s.protect)
    on_aws = pulumi.ResourceOptions(parent=parent, provider=provider)
    bucket = aws.s3.Bucket(
        "bucket",
        bucket=s.bucket,
        force_destroy=not s.protect,
        tags={"project": args.project, "stack": args.instance},
        opts=pulumi.ResourceOptions.merge(on_aws, keep),
    )
    iam = on_aws  # access for this stack's pods: goes with the stack
    on_aws = pulumi.ResourceOptions.merge(on_aws, keep)
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
    ready: list[pulumi.Resource] = [bucket, ownership, public_block, encryption, tls_only, lifecycle]
    accesses: dict[str, S3Access] = {}
    keys: dict[str, RoleKey] = {}
    for role in args.roles:
        # The pipeline's resource names are the ones earlier versions used (no replacement on update).
        prefix = "bucket-access" if role == "pipeline" else f"bucket-access-{role}"
        policy = aws.iam.Policy(
            prefix,
            name=f"{args.project}-{args.instance}-{args.namespace}-{'bucket' if role == 'pipeline' else role}"[:128],
            description=f"{role}: its prefixes in the {args.project} bucket of stack {args.instance}",
            policy=bucket.arn.apply(lambda arn, role=role: policy_document(arn, role)),
            opts=iam,
        )
        if s.credentials == "irsa":
            ready.append(_irsa_role(args, aws, role, policy, iam))
            secret_name = None
        else:
            keys[role] = _user_key(args, aws, role, policy, iam)
            if role != "cache":  # the cache's lives in the cache namespace: `infra.fluid` asks Storage for it
                ready.append(role_secret(parent, args, role, keys[role], ns.name))
            secret_name = credentials_secret(role)
        accesses[role] = S3Access(bucket=bucket.bucket, region=s.region, endpoint=None, secret_name=secret_name)
    return StorageMode(bucket=bucket.bucket, accesses=accesses, ready=ready, keys=keys)


def _user_key(args: StorageArgs, aws, role: str, policy, on_aws: pulumi.ResourceOptions) -> RoleKey:
    """An IAM user with this role's policy and an access key."""
    base = "pipeline-user" if role == "pipeline" else f"{role}-user"
    name = f"{args.project}-{args.instance}-{args.namespace}"  # the pipeline's, as earlier versions named it
    user = aws.iam.User(base, name=(name if role == "pipeline" else f"{name}-{role}")[:64], opts=on_aws)
    attach = aws.iam.UserPolicyAttachment(f"{base}-policy", user=user.name, policy_arn=policy.arn, opts=on_aws)
    key = aws.iam.AccessKey(f"{base}-key", user=user.name, opts=on_aws)
    return RoleKey(key.id, key.secret, [attach])


def _irsa_role(args: StorageArgs, aws, role: str, policy, on_aws: pulumi.ResourceOptions):
    """A role trusted by the cluster's OIDC provider for exactly one ServiceAccount."""
    arn = args.storage.oidc_provider_arn
    issuer = oidc_issuer(arn)
    namespace, account = args.irsa_subjects[role]
    iam_role = aws.iam.Role(
        "pipeline-role" if role == "pipeline" else f"{role}-role",
        name=args.irsa_role_names[role],
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
                                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
                            }
                        },
                    }
                ],
            }
        ),
        opts=on_aws,
    )
    return aws.iam.RolePolicyAttachment(
        "pipeline-role-policy" if role == "pipeline" else f"{role}-role-policy",
        role=iam_role.name,
        policy_arn=policy.arn,
        opts=on_aws,
    )
