"""The outage proxy used by the S3 fault drill: passes S3 traffic through, cuts it off on demand, and the
server behind it keeps its data."""

import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

from demo.proxy import Proxy


def client(endpoint: str, attempts: int = 1):
    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": attempts}, connect_timeout=2,
                                    read_timeout=5, s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def test_proxy_passes_traffic_cuts_it_and_restores_it(s3_server, bucket):
    with Proxy.to(s3_server.endpoint) as proxy:
        s3 = client(proxy.endpoint)
        s3.put_object(Bucket=bucket, Key="a", Body=b"before")
        assert proxy.served >= 1

        proxy.down()
        with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            s3.get_object(Bucket=bucket, Key="a")
        assert proxy.refused >= 1
        # The server itself is untouched.
        assert client(s3_server.endpoint).get_object(Bucket=bucket, Key="a")["Body"].read() == b"before"

        proxy.up()
        assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"before"


def test_retries_ride_out_a_short_outage(s3_server, bucket):
    with Proxy.to(s3_server.endpoint) as proxy:
        s3 = client(proxy.endpoint, attempts=10)
        s3.put_object(Bucket=bucket, Key="b", Body=b"x" * 1000)
        start = time.monotonic()
        outage = proxy.outage(1.5)
        assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"x" * 1000
        outage.join()
        assert time.monotonic() - start >= 1.4
        assert proxy.refused >= 1
