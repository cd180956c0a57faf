"""The bucket's stack rule: private, encrypted at rest, TLS only. The bucket's settings live in separate
resources (public access block, encryption, policy, ACL) that point at it by id or by property dependency."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

if __package__:  # policy.bucket_rules: the program's environment (the tests, python -m policy.check)
    from policy.manifests import get_path, inputs_of, is_list, is_map, truthy
else:  # bucket_rules: the pack's own environment, where policy/ is the first sys.path entry (pack.py)
    from manifests import get_path, inputs_of, is_list, is_map, truthy


# --- the bucket (a stack rule: the bucket's settings live in separate resources) -------------------------

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = {"AES256", "aws:kms", "aws:kms:dsse"}


def _bucket_ids(bucket: Mapping) -> set[str]:
    """What another resource may hold to point at this bucket: its id, physical name or ARN."""
    ids = {bucket.get("name"), bucket.get("id")}
    for source in (inputs_of(bucket), bucket.get("outputs") if is_map(bucket.get("outputs")) else {}):
        for key in ("id", "bucket", "arn"):
            ids.add(source.get(key) if key in source else None)
    return {value for value in ids if isinstance(value, str) and value}


def _points_at(resource: Mapping, bucket: Mapping) -> bool:
    refs = resource.get("refs")
    if is_map(refs) and is_list(refs.get("bucket")):
        return bucket.get("name") in refs["bucket"]
    return get_path(inputs_of(resource), "bucket") in _bucket_ids(bucket)


def _policy_document(value: Any) -> Mapping:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if is_map(value) else {}


def _as_list(value: Any) -> list:
    return list(value) if is_list(value) else [value]


def _denies_plain_http(statement: Mapping) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (is_map(principal) and "*" in _as_list(principal.get("AWS")))):
        return False
    if not any(action in ("s3:*", "*") for action in _as_list(statement.get("Action"))):
        return False
    secure = get_path(statement, "Condition", "Bool", "aws:SecureTransport")
    return any(str(item).lower() == "false" for item in _as_list(secure))


def _allows_everyone(statement: Mapping) -> bool:
    principal = statement.get("Principal")
    public = principal == "*" or (is_map(principal) and "*" in _as_list(principal.get("AWS")))
    return statement.get("Effect") == "Allow" and public and not statement.get("Condition")


def check_buckets(resources: Sequence[Mapping], config: Mapping) -> list[tuple[Mapping, str]]:
    problems: list[tuple[Mapping, str]] = []

    def of_type(types: tuple[str, ...], bucket: Mapping) -> list[Mapping]:
        return [r for r in resources if r.get("type") in types and _points_at(r, bucket)]

    for bucket in (r for r in resources if r.get("type") in BUCKET_TYPES):
        inputs = inputs_of(bucket)
        # Private: no public ACL, and a public access block with all four switches on.
        acls = [inputs.get("acl")] + [get_path(inputs_of(r), "acl") for r in of_type(BUCKET_ACL, bucket)]
        for acl in acls:
            if acl in PUBLIC_ACLS:
                problems.append((bucket, f"bucket ACL {acl} makes objects public"))
        blocks = of_type(ACCESS_BLOCK, bucket)
        if not blocks:
            problems.append((bucket, "bucket has no BucketPublicAccessBlock: add one with all four flags on"))
        for block in blocks:
            off = [flag for flag in BLOCK_FLAGS if not truthy(inputs_of(block).get(flag))]
            if off:
                problems.append((bucket, f"public access block leaves {', '.join(off)} off"))
        # Encrypted at rest: a default encryption rule, inline (deprecated) or as its own resource.
        rules = _as_list(get_path(inputs, "serverSideEncryptionConfiguration", "rule"))
        for config_resource in of_type(ENCRYPTION, bucket):
            rules += _as_list(get_path(inputs_of(config_resource), "rules"))
        algorithms = {get_path(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in rules}
        if not algorithms & SSE_ALGORITHMS:
            problems.append((bucket, "bucket has no default encryption (AES256 or aws:kms)"))
        # TLS only: a bucket policy that denies every request made without TLS; and nothing public.
        statements = []
        for policy in of_type(BUCKET_POLICY, bucket):
            statements += _as_list(_policy_document(inputs_of(policy).get("policy")).get("Statement"))
        statements = [s for s in statements if is_map(s)]
        if not any(_denies_plain_http(s) for s in statements):
            problems.append((bucket, "bucket policy does not deny requests without TLS "
                                   "(Deny s3:* when aws:SecureTransport is false)"))
        if any(_allows_everyone(s) for s in statements):
            problems.append((bucket, "bucket policy allows everyone (Principal *) without a condition"))
    return problems
