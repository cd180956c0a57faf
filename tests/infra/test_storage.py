"""The storage modes as rendered: the AWS bucket's hardening and lifecycle, prod's retention, IAM scoped to
the bucket, IRSA, external endpoints, and MinIO run in the namespace."""

from __future__ import annotations

import json

import yaml

from infra.s3identities import SERVICE_ACCOUNTS


def only(rendered, type_: str) -> dict:
    (r,) = rendered.by_type(type_)
    return r


def test_aws_bucket_is_hardened(renders):
    for r in (renders.variant("prod"), renders.variant("dev-aws")):
        types = {x["type"] for x in r.resources}
        assert "aws:s3/bucket:Bucket" in types
        assert not [t for t in types if t.startswith("aws:s3/") and t.endswith("V2")], "deprecated *V2 resources"
        block = only(r, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
        assert all(
            block[k] is True
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        sse = only(r, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        assert sse["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        policy = json.loads(only(r, "aws:s3/bucketPolicy:BucketPolicy")["inputs"]["policy"])
        (deny,) = policy["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Resource"] == [
            f"arn:aws:s3:::{r.outputs['bucket']}",
            f"arn:aws:s3:::{r.outputs['bucket']}/*",
        ]
        rules = {
            x["id"]: x
            for x in only(r, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["inputs"]["rules"]
        }
        assert rules["expire-old-runs"]["filter"] == {"prefix": "runs/"}
        assert rules["expire-old-runs"]["expiration"]["days"] == (90 if r.stack == "prod" else 30)


def test_prod_keeps_its_bucket_and_versions(prod):
    bucket = only(prod, "aws:s3/bucket:Bucket")
    assert bucket["options"]["protect"] and bucket["options"]["retainOnDelete"]
    assert bucket["inputs"]["forceDestroy"] is False
    versioning = only(prod, "aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    # The bucket and what hardens it are kept (tests/infra/test_destroy.py); the rest goes.
    kept = {r["name"] for r in prod.resources if r["options"].get("protect") or r["options"].get("retainOnDelete")}
    assert kept == {
        "bucket",
        "bucket-ownership",
        "bucket-public-access-block",
        "bucket-encryption",
        "bucket-tls-only",
        "bucket-versioning",
        "bucket-lifecycle",
    }


def test_dev_on_aws_force_destroys(renders):
    r = renders.variant("dev-aws")
    bucket = only(r, "aws:s3/bucket:Bucket")
    assert bucket["inputs"]["forceDestroy"] is True and not bucket["options"]["protect"]
    assert not r.by_type("aws:s3/bucketVersioning:BucketVersioning")


def test_iam_policy_is_scoped_to_the_bucket(prod):
    arn = f"arn:aws:s3:::{prod.outputs['bucket']}"
    for policy in prod.by_type("aws:iam/policy:Policy"):
        doc = json.loads(policy["inputs"]["policy"])
        resources = {res for s in doc["Statement"] for res in s["Resource"]}
        assert all(res == arn or res.startswith(f"{arn}/") for res in resources), resources
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert all(a.startswith("s3:") and "*" not in a for a in actions)
        assert "s3:DeleteBucket" not in actions and "s3:PutBucketPolicy" not in actions


def test_access_key_mode_puts_the_key_in_a_secret(prod):
    (key,) = [k for k in prod.by_type("aws:iam/accessKey:AccessKey") if k["name"] == "pipeline-user-key"]
    (user,) = [u for u in prod.by_type("aws:iam/user:User") if u["name"] == "pipeline-user"]
    assert key["inputs"]["user"] == user["inputs"]["name"]
    (secret,) = [s for s in prod.find("Secret", "s3-credentials") if s["metadata"]["namespace"] == "kubeflow-e2e"]
    assert secret["data"] == {"AWS_ACCESS_KEY_ID": "[secret]", "AWS_SECRET_ACCESS_KEY": "[secret]"}
    assert not prod.by_type("aws:iam/role:Role")


def test_irsa_role_and_annotated_service_accounts(renders):
    r = renders.variant("prod-irsa")
    issuer = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123"
    roles = {x["inputs"]["name"]: x for x in r.by_type("aws:iam/role:Role")}
    for sa in SERVICE_ACCOUNTS:
        arn = r.one("ServiceAccount", sa)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        role = roles[arn.rsplit("/", 1)[1]]
        (statement,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"]["Federated"].endswith(f":oidc-provider/{issuer}")
        assert statement["Condition"]["StringEquals"] == {
            f"{issuer}:aud": "sts.amazonaws.com",
            f"{issuer}:sub": f"system:serviceaccount:kubeflow-e2e:{sa}",
        }
        assert arn.startswith("arn:aws:iam::123456789012:role/")
    assert [s["type"] for s in r.find("Secret")] == ["kubernetes.io/service-account-token"]
    assert not r.by_type("aws:iam/accessKey:AccessKey")
    attached = {a["inputs"]["role"] for a in r.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == set(roles)
    repo = yaml.safe_load(r.one("ConfigMap", "artifact-repositories")["data"]["default"])
    assert repo["s3"]["useSDKCreds"] is True and "accessKeySecret" not in repo["s3"]


def test_external_endpoint(renders):
    r = renders.variant("dev-external")
    assert not r.find("Deployment", "minio") and not r.by_type("aws:s3/bucket:Bucket")
    assert r.one("Secret", "s3-credentials")["data"] == {
        "AWS_ACCESS_KEY_ID": "[secret]",
        "AWS_SECRET_ACCESS_KEY": "[secret]",
    }
    s3 = yaml.safe_load(r.one("ConfigMap", "artifact-repositories")["data"]["default"])["s3"]
    assert s3["endpoint"] == "s3.example.com:9443" and s3["insecure"] is False


def test_minio_in_the_namespace(dev):
    deployment = dev.one("Deployment", "minio")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("quay.io/minio/minio:RELEASE.")
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e} == {
        "MINIO_ROOT_USER": "minio-root",
        "MINIO_ROOT_PASSWORD": "minio-root",
    }
    assert dev.one("PersistentVolumeClaim", "minio-data")["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    assert dev.one("Service", "minio")["spec"]["type"] == "ClusterIP"
    # Generated credentials, kept by the engine: the two Secrets that hold them ignore later changes.
    kept = {r["inputs"]["metadata"]["name"]: r for r in dev.resources if r["options"].get("ignoreChanges")}
    assert {"minio-root", "minio-users", "s3-credentials"} <= set(kept)
    assert all(r["options"]["ignoreChanges"] == ["data", "stringData"] for r in kept.values())
    assert set(kept["minio-users"]["inputs"]["stringData"]) == {
        f"{role}.{part}" for role in ("pipeline", "serving", "tensorboard", "cache") for part in ("id", "key")
    }
    assert not [r for r in dev.resources if r["type"].startswith("random:")]
    job = dev.one("Job", "minio-bucket")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert 'mc mb --ignore-existing "local/$BUCKET"' in script
    assert "mc admin user add" in script and "mc admin policy attach" in script
    policy = json.loads(dev.one("ConfigMap", "minio-bucket-policy")["data"]["pipeline.json"])
    assert {res for s in policy["Statement"] for res in s["Resource"]} == {
        "arn:aws:s3:::kubeflow-e2e-dev",
        *(f"arn:aws:s3:::kubeflow-e2e-dev/{p}/*" for p in ("data", "runs", "models", "argo")),
    }
