"""`Store.check()` lists only under the store's own prefix: the stack gives each role ListBucket only on its
prefixes (`s3:prefix`), so a check that listed the bucket's root would be refused for the serving, TensorBoard
and cache roles. Read from the request log of a real S3 server (moto's, which logs every request line)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import boto3

from demo.s3server import S3Server
from trainer.store import open_store


def _list_requests(log_path) -> list[dict]:
    out = []
    for line in log_path.read_text().splitlines():
        if '"GET /checked?' in line:
            target = line.split('"GET ', 1)[1].split(" ", 1)[0]
            out.append(parse_qs(urlparse(target).query, keep_blank_values=True))
    return out


def test_check_lists_under_the_store_prefix(tmp_path, monkeypatch):
    log = tmp_path / "s3.log"
    with S3Server(log_path=str(log)) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket="checked")
        open_store("s3://checked/models/mnist", "MODEL_URL").check()
        open_store("s3://checked", "MODEL_URL").check()
        deadline = time.monotonic() + 10
        while len(_list_requests(log)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    first, second = _list_requests(log)
    assert first["prefix"] == ["models/mnist/"] and first["max-keys"] == ["1"]
    assert second.get("prefix", [""]) == [""]
