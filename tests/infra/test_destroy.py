"""What `pulumi destroy` would delete: everything that is neither protected nor retained on delete (a read,
`.get`, is never deleted). In prod the bucket and everything that hardens it stay."""

from __future__ import annotations

BUCKET_SATELLITES = {
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
}


def deleted_by_destroy(rendered) -> list[dict]:
    return [
        r
        for r in rendered.resources
        if r["custom"]
        and not r.get("read")
        and not r["type"].startswith("pulumi:providers:")
        and not (r["options"].get("protect") or r["options"].get("retainOnDelete"))
    ]


def test_prod_destroy_keeps_the_bucket_and_all_that_hardens_it(prod):
    kept = {r["type"] for r in prod.resources if r["options"].get("protect") and r["options"].get("retainOnDelete")}
    assert kept == BUCKET_SATELLITES, kept ^ BUCKET_SATELLITES
    deleted = {r["type"] for r in deleted_by_destroy(prod)}
    assert not {t for t in deleted if t.startswith("aws:s3/")}, deleted
    # The pipeline's own access (IAM user, key, policy) goes with the stack.
    assert {"aws:iam/user:User", "aws:iam/accessKey:AccessKey", "aws:iam/policy:Policy"} <= deleted


def test_unprotected_bucket_goes_whole(renders):
    r = renders.variant("dev-aws")
    assert BUCKET_SATELLITES - {"aws:s3/bucketVersioning:BucketVersioning"} <= {
        x["type"] for x in deleted_by_destroy(r)
    }
    assert not any(x["options"].get("protect") for x in r.resources)
