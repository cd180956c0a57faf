"""`storage.checksums: when_required` against an S3-compatible server that refuses botocore's checksum
headers: real `prepare-data` processes, the real S3 server behind `demo.s3faults.FaultProxy`, and the two
variables as the stack renders them into the prepare-data pod."""

from __future__ import annotations

import uuid

import boto3
import pytest

from demo.s3faults import FaultProxy, reject_checksum_headers
from demo.s3server import boto_kwargs
from tests.conftest import ROOT
from tests.infra.pods import containers, env

SETTING = {"storage.checksums": "when_required"}
# The line prepare-data ends with (docs/operations.md, "Field situations"); the object's key between them.
REFUSED_HEAD = ("error: S3 request failed (InvalidArgument: Unsupported header 'x-amz-sdk-checksum-algorithm' "
                "received for this API call.) (s3://")
REFUSED_TAIL = ("): the S3 server at {endpoint} refuses botocore's checksum headers: set the stack's "
                "storage.checksums to when_required (AWS_REQUEST_CHECKSUM_CALCULATION=when_required)")


@pytest.fixture(scope="module")
def checksum_env(renders) -> dict[str, str]:
    """The botocore variables the stack gives the prepare-data pod under `storage.checksums: when_required`."""
    rendered = renders("dev", SETTING)
    (prep,) = [c for where, c, _ in containers(rendered) if where.startswith("WorkflowTemplate/prepare-data/")]
    found = {k: e["value"] for k, e in env(prep).items() if "CHECKSUM" in k}
    assert found == {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                     "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
    return found


def test_prepare_data_through_a_server_that_refuses_checksum_headers(s3_server, run_trainer, checksum_env):
    bucket = f"checksums-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint, **boto_kwargs()).create_bucket(Bucket=bucket)
    with FaultProxy(s3_server.endpoint, [reject_checksum_headers]) as proxy:
        env = {"S3_ENDPOINT": proxy.endpoint, "DATA_URL": f"s3://{bucket}/data/mnist"}
        # botocore's default: every upload carries CRC32 headers, and this server refuses them.
        proc = run_trainer("prepare-data", "--source", "digits", env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(REFUSED_HEAD), line
        assert line.endswith(REFUSED_TAIL.format(endpoint=proxy.endpoint)), line
        assert proxy.answered
        # The stack's setting: no checksum headers where S3 does not require them; the dataset is written.
        refused = len(proxy.answered)
        proc = run_trainer("prepare-data", "--source", "digits", env={**env, **checksum_env}, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert len(proxy.answered) == refused and proxy.passed > 0
    keys = boto3.client("s3", endpoint_url=s3_server.endpoint, **boto_kwargs()).list_objects_v2(
        Bucket=bucket, Prefix="data/mnist/")["Contents"]
    assert "data/mnist/manifest.json" in {k["Key"] for k in keys}


def test_the_line_is_in_the_operations_table():
    page = (ROOT / "docs/operations.md").read_text()
    assert REFUSED_HEAD + "<bucket>/<key>" + REFUSED_TAIL.format(endpoint="<endpoint>") in page
