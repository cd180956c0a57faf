"""What a user sees when S3 refuses a request for a reason they can act on: real `python -m trainer`
processes against the real S3 server, behind `demo.s3faults.FaultProxy`, which answers with AWS's own error
documents. Each code gets its own line naming the fix; none of them is a credentials hint unless the
credentials are the problem, and botocore does not retry them (one request each, then the error)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from demo.s3faults import FaultProxy, reject_code
from demo.s3server import boto_kwargs
from tests.conftest import ROOT

URL = "s3://{bucket}/models/mnist"
# The exact line, as docs/operations.md's field situations table gives it. {endpoint} is the proxy's.
LINES = {
    "RequestTimeTooSkewed": (
        "error: this machine's clock is more than 15 minutes off the S3 server's (RequestTimeTooSkewed) at "
        "{endpoint} ({url}): set the node's clock right (NTP or chrony: compare `date -u` with the server's "
        "time); the credentials are fine"),
    "SignatureDoesNotMatch": (
        "error: S3 rejected the signature of these credentials (SignatureDoesNotMatch) at {endpoint} ({url}): "
        "AWS_SECRET_ACCESS_KEY is not the secret of AWS_ACCESS_KEY_ID: check the Secret's values (a stray space "
        "or newline counts)"),
    "InvalidAccessKeyId": (
        "error: S3 does not know the access key of these credentials (InvalidAccessKeyId) at {endpoint} ({url}): "
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the Secret's values) and that the key exists at "
        "this endpoint"),
    "AccessDenied": (
        "error: S3 denied access (AccessDenied) at {endpoint} ({url}): the credentials were accepted but may not "
        "do this here: check the role's policy (or the bucket policy) for this bucket and prefix"),
    "NoSuchBucket": (
        "error: S3 bucket '{bucket}' does not exist at {endpoint} ({url}): create the bucket or fix the "
        "bucket name in the URL"),
    "KMS": (
        "error: S3 could not use the bucket's KMS key for these credentials (AccessDenied: User: "
        "arn:aws:iam::111122223333:user/pipeline is not authorized to perform: kms:Decrypt on resource: "
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based "
        "policy allows the kms:Decrypt action) at {endpoint} ({url}): allow the role kms:Decrypt and "
        "kms:GenerateDataKey on the bucket's key (in the role's policy or the key policy), and check that the "
        "key is enabled"),
}


@pytest.fixture
def s3_bucket(s3_server):
    name = f"faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint, **boto_kwargs()).create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("code", list(LINES))
def test_each_s3_error_code_has_its_own_message(code, s3_server, s3_bucket, run_trainer, tmp_path):
    with FaultProxy(s3_server.endpoint, [reject_code(code)]) as proxy:
        proc = run_trainer("sync-model", "--dest", str(tmp_path / "serving"),
                           env={"MODEL_URL": URL.format(bucket=s3_bucket), "S3_ENDPOINT": proxy.endpoint},
                           timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    # The first request is sync-model's check of the bucket, so the line names the bucket.
    expected = LINES[code].format(endpoint=proxy.endpoint, bucket=s3_bucket, url=f"s3://{s3_bucket}")
    assert line == expected
    assert "Traceback" not in proc.stderr
    assert len(proxy.answered) == 1, proxy.answered  # not retried: one refused request, then the error


def test_clock_skew_is_named_by_every_command(s3_server, s3_bucket, run_trainer, tmp_path):
    """prepare-data and train meet the skewed clock at their first request, with the same line."""
    url = f"s3://{s3_bucket}/data/mnist"
    with FaultProxy(s3_server.endpoint, [reject_code("RequestTimeTooSkewed")]) as proxy:
        env = {"S3_ENDPOINT": proxy.endpoint, "DATA_URL": url, "RUN_URL": f"s3://{s3_bucket}/runs/r",
               "MODEL_URL": f"s3://{s3_bucket}/models/mnist"}
        for args in (("prepare-data", "--source", "digits"), ("train", "--epochs", "1")):
            proc = run_trainer(*args, env=env, timeout=300)
            assert proc.returncode == 2, proc.stderr
            line = proc.stderr.strip().splitlines()[-1]
            assert line == LINES["RequestTimeTooSkewed"].format(endpoint=proxy.endpoint, url=f"s3://{s3_bucket}")
            assert "AWS_ACCESS_KEY_ID" not in line and "Traceback" not in proc.stderr


def test_the_lines_are_in_the_operations_table():
    page = (ROOT / "docs/operations.md").read_text()
    for code, line in LINES.items():
        text = line.format(endpoint="<endpoint>", bucket="<bucket>", url="s3://<bucket>")
        text = text.replace("arn:aws:iam::111122223333:user/pipeline", "<role arn>").replace(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "<key arn>")
        assert text in page, code
