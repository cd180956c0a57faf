"""Buckets on the test S3 server for module-scoped fixtures, where pytest's `monkeypatch` is not available."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import boto3
import pytest


@contextlib.contextmanager
def module_bucket(s3_server, prefix: str) -> Iterator[str]:
    """A new bucket `<prefix>-<10 hex digits>` on the test server, yielded while this process's boto3 points at
    the server (its S3 environment set, and restored on exit)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env().items():
            mp.setenv(key, value)
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        yield name
