"""trainer.store and trainer.s3 against the real S3 server (moto, over HTTP) and a local folder."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import boto3
import pytest

from common.errors import UserError
from demo.proxy import Proxy
from demo.s3server import S3Server, free_port
from trainer import s3
from trainer.store import LocalStore, S3Store, open_store
from trainer.storeerrors import NotFound, StoreError

BAD_URLS = [
    "http://example.com/data",
    "bucket/prefix",
    "/abs/path/without/scheme",
    "s3:/bucket/prefix",
    "s3://Bad_Bucket/prefix",
    "s3://ab/prefix",
    "s3a://bucket/prefix",
    "file://relative/path",
    "s3://bucket/a//b",
    "s3://bucket/../up",
    "",
]


@pytest.mark.parametrize("var", ["DATA_URL", "RUN_URL", "MODEL_URL"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_url_names_variable_value_and_fix(var, url):
    with pytest.raises(UserError) as e:
        open_store(url, var)
    text = str(e.value)
    assert var in text
    assert "s3://" in e.value.fix and "file:///" in e.value.fix
    if url:
        assert url in text


@pytest.mark.parametrize(
    "url,expected",
    [
        ("s3://my-bucket", "s3://my-bucket"),
        ("s3://my-bucket/", "s3://my-bucket"),
        ("s3://my-bucket/data/mnist/", "s3://my-bucket/data/mnist"),
        ("s3://my.bucket-1/a/b", "s3://my.bucket-1/a/b"),
        ("file:///tmp/x/", "file:///tmp/x"),
    ],
)
def test_good_urls_normalise(url, expected):
    assert open_store(url).url == expected


def test_child_urls():
    store = open_store("s3://bkt/data")
    assert store.child("1", "variables").url == "s3://bkt/data/1/variables"
    assert isinstance(store, S3Store) and store.child("x").bucket == "bkt"
    assert open_store("file:///tmp/a").child("b/c").url == "file:///tmp/a/b/c"
    with pytest.raises(ValueError):
        store.child("../escape")


@pytest.fixture(params=["s3", "file"])
def store(request, tmp_path):
    if request.param == "s3":
        name = request.getfixturevalue("bucket")
        return open_store(f"s3://{name}/some/prefix", "TEST_URL")
    return open_store(f"file://{tmp_path}/store", "TEST_URL")


def test_roundtrip(store, tmp_path):
    store.check()
    assert store.list() == {}
    store.put_bytes("a.txt", b"hello")
    store.put_bytes("dir/b.bin", b"\x00" * 10)
    store.put_bytes("dir/sub/c.bin", b"123")
    store.put_bytes("dirx/d", b"4")
    assert store.get_bytes("a.txt") == b"hello"
    assert store.list() == {"a.txt": 5, "dir/b.bin": 10, "dir/sub/c.bin": 3, "dirx/d": 1}
    assert store.list("dir/") == {"dir/b.bin": 10, "dir/sub/c.bin": 3}
    assert store.child("dir").list() == {"b.bin": 10, "sub/c.bin": 3}
    assert store.exists("dir/b.bin") and not store.exists("dir/nope")

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    store.put_file("files/src.bin", src)
    out = tmp_path / "out" / "copy.bin"
    store.get_file("files/src.bin", out)
    assert out.read_bytes() == src.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["copy.bin"]  # no temp file left behind

    store.delete(["a.txt", "dir/sub/c.bin", "never-existed"])
    assert sorted(store.list()) == ["dir/b.bin", "dirx/d", "files/src.bin"]


def test_missing_key_is_not_found(store, tmp_path):
    with pytest.raises(NotFound) as e:
        store.get_bytes("missing.json")
    assert "missing.json" in str(e.value)
    with pytest.raises(NotFound):
        store.get_file("missing.bin", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_s3_store_does_not_see_sibling_prefixes(bucket):
    store = open_store(f"s3://{bucket}/data")
    open_store(f"s3://{bucket}/data2").put_bytes("x", b"1")
    store.put_bytes("y", b"2")
    assert store.list() == {"y": 1}


def test_large_file_uses_multipart(bucket, s3_server, tmp_path):
    store = open_store(f"s3://{bucket}/big")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(s3.MULTIPART_BYTES + 1024 * 1024))
    store.put_file("big.bin", src)
    raw = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    etag = raw.head_object(Bucket=bucket, Key="big/big.bin")["ETag"]
    assert etag.strip('"').endswith("-2"), etag  # two parts
    out = tmp_path / "back.bin"
    store.get_file("big.bin", out)
    assert out.read_bytes() == src.read_bytes()


def test_checked_download_skips_only_botocores_crc(bucket, tmp_path, monkeypatch):
    """`checked=True` (the caller compares a sha256 it knows) reads the body without botocore's CRC32 pass;
    a plain get_file keeps it. Both return the sha256 of the bytes written."""
    from botocore.httpchecksum import StreamingChecksumBody

    validated = []
    real = StreamingChecksumBody._validate_checksum
    monkeypatch.setattr(StreamingChecksumBody, "_validate_checksum",
                        lambda self: validated.append(1) or real(self))
    store = open_store(f"s3://{bucket}/crc")
    data = os.urandom(3 * 1024 * 1024 + 5)
    store.put_bytes("shard.bin", data)
    digest = hashlib.sha256(data).hexdigest()

    assert store.get_file("shard.bin", tmp_path / "plain.bin") == digest
    assert validated, "a plain download should check the server's CRC32"
    validated.clear()
    assert store.get_file("shard.bin", tmp_path / "checked.bin", checked=True) == digest
    assert not validated
    assert (tmp_path / "checked.bin").read_bytes() == data


def test_local_store_hides_partial_writes(tmp_path):
    store = open_store(f"file://{tmp_path}")
    assert isinstance(store, LocalStore)
    (tmp_path / ".model.bin.0123abcd.partial").write_bytes(b"half")
    store.put_bytes("model.bin", b"whole")
    assert store.list() == {"model.bin": 5}
    assert store.local_path("model.bin") == tmp_path / "model.bin"


def test_unreachable_endpoint_names_it_and_fails_fast(monkeypatch, s3_env):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("S3_ENDPOINT", dead)
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("S3_CONNECT_TIMEOUT", "1")
    store = open_store("s3://some-bucket/data")
    start = time.monotonic()
    with pytest.raises(StoreError) as e:
        store.check()
    assert time.monotonic() - start < 15
    assert dead in str(e.value) and "S3_ENDPOINT" in e.value.fix
    with pytest.raises(StoreError, match="cannot reach"):
        store.get_bytes("manifest.json")


def test_endpoint_without_scheme_is_a_user_error(monkeypatch, s3_env):
    monkeypatch.setenv("S3_ENDPOINT", "minio.minio:9000")
    with pytest.raises(UserError) as e:
        open_store("s3://some-bucket/x").check()
    assert "S3_ENDPOINT" in str(e.value) and "minio.minio:9000" in str(e.value)


def test_missing_bucket(s3_env):
    store = open_store("s3://no-such-bucket-here/data")
    with pytest.raises(StoreError) as e:
        store.check()
    assert "no-such-bucket-here" in str(e.value) and "does not exist" in str(e.value)
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("manifest.json")
    with pytest.raises(StoreError, match="does not exist"):
        store.put_bytes("x", b"1")


@pytest.fixture(scope="module")
def auth_server():
    """A second S3 server that checks credentials: one IAM user whose key may use S3."""
    with S3Server() as server:
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="trainer")
        iam.put_user_policy(
            UserName="trainer",
            PolicyName="s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        s3_client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
        s3_client.create_bucket(Bucket="secured")
        # From here on every request must be signed by a known key.
        import urllib.request

        request = urllib.request.Request(
            server.endpoint + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=5).close()
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


@pytest.mark.parametrize("case", ["unknown key", "wrong secret"])
def test_wrong_credentials(auth_server, monkeypatch, case):
    server, key_id, secret = auth_server
    monkeypatch.setenv("S3_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = open_store("s3://secured/data")
    store.put_bytes("ok", b"1")  # the right key works
    if case == "unknown key":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    else:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    for action in (store.check, lambda: store.get_bytes("ok"), lambda: store.put_bytes("x", b"1")):
        with pytest.raises(StoreError) as e:
            action()
        assert "credentials" in str(e.value) and "AWS_SECRET_ACCESS_KEY" in e.value.fix, str(e.value)


def test_retry_settings_come_from_env(monkeypatch, s3_env):
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("S3_CONNECT_TIMEOUT", "2.5")
    config = s3.client().meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.connect_timeout == 2.5
    assert config.s3 == {"addressing_style": "path"}
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "zero")
    with pytest.raises(UserError, match="S3_MAX_ATTEMPTS"):
        s3.client()


def test_default_retries_ride_out_a_short_outage(bucket, s3_server, monkeypatch, tmp_path):
    proxy = Proxy.to(s3_server.endpoint).start()
    monkeypatch.setenv("S3_ENDPOINT", proxy.endpoint)
    monkeypatch.delenv("S3_MAX_ATTEMPTS", raising=False)
    store = open_store(f"s3://{bucket}/runs/r1")
    store.put_bytes("before", b"1")
    try:
        # Too few attempts: the outage surfaces as an error that names the endpoint.
        proxy.down()
        monkeypatch.setenv("S3_MAX_ATTEMPTS", "2")
        with pytest.raises(StoreError, match="cannot reach") as e:
            store.put_bytes("x", b"1")
        assert proxy.endpoint in str(e.value)
        # The defaults carry a 2-second outage: the same calls just take longer.
        monkeypatch.delenv("S3_MAX_ATTEMPTS")
        threading.Timer(2.0, proxy.up).start()
        start = time.monotonic()
        src = tmp_path / "ckpt.bin"
        src.write_bytes(os.urandom(200_000))
        store.put_file("checkpoints/1/ckpt.bin", src)
        assert time.monotonic() - start >= 1.5  # it really waited for the outage to end
        # And a download (the streaming GET path) and a listing, each through its own outage.
        proxy.down()
        threading.Timer(1.5, proxy.up).start()
        store.get_file("checkpoints/1/ckpt.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        proxy.down()
        threading.Timer(1.5, proxy.up).start()
        assert store.list() == {"before": 1, "checkpoints/1/ckpt.bin": 200_000}
    finally:
        proxy.stop()
