"""prepare-data (trainer/prepare.py), through the real S3 server."""

from __future__ import annotations

import hashlib
import time

import boto3
import pytest

from demo.s3server import free_port
from tests.helpers.process import stdout_json
from trainer import data, sources


def test_prepare_data_cli_is_idempotent(run_trainer, bucket, s3_server):
    env = {"DATA_URL": f"s3://{bucket}/data/mnist"}
    first = run_trainer("prepare-data", "--source", "digits", env=env, check=True)
    result = stdout_json(first)
    assert result["written"] is True and result["train"] == 1437 and result["test"] == 360
    assert result["shards"] == 4
    raw = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")

    def objects():
        listing = raw.list_objects_v2(Bucket=bucket)["Contents"]
        return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing}

    before = objects()
    assert sorted(before) == sorted(
        [f"data/mnist/{s}-{i:05d}-of-00004.tfrecord" for s in ("train", "test") for i in range(4)]
        + ["data/mnist/manifest.json", "data/mnist/test.npz"]
    )
    time.sleep(1.1)  # LastModified has one-second resolution: a rewrite would show
    second = stdout_json(run_trainer("prepare-data", "--source", "digits", env=env, check=True))
    assert second["written"] is False and "unchanged" in second["status"]
    assert second["fingerprint"] == result["fingerprint"]
    assert objects() == before

    # Another shard count is another layout: rewritten, and the old shards are gone.
    third = stdout_json(run_trainer("prepare-data", "--source", "digits", "--shards", "2", env=env, check=True))
    assert third["written"] is True and third["shards"] == 2
    assert sorted(k for k in objects() if "train-" in k) == [
        "data/mnist/train-00000-of-00002.tfrecord", "data/mnist/train-00001-of-00002.tfrecord"
    ]


def test_manifest_layout(prepared, digits):
    store, manifest = prepared
    assert manifest == data.read_manifest(store)
    assert manifest["format"] == 1 and manifest["image_shape"] == [28, 28, 1]
    assert manifest["fingerprint"] == sources.fingerprint(digits)
    train = manifest["splits"]["train"]
    assert train["count"] == 1437 and sum(s["count"] for s in train["shards"]) == 1437
    listing = store.list()
    for shard in train["shards"]:
        assert listing[shard["name"]] == shard["size"]
        assert hashlib.sha256(store.get_bytes(shard["name"])).hexdigest() == shard["sha256"]
    assert manifest["arrays"]["test"]["name"] == "test.npz"


@pytest.mark.parametrize(
    "problem,env,expect",
    [
        ("not an s3 URL", {"DATA_URL": "gs://bucket/data"}, ["DATA_URL", "gs://bucket/data", "s3://"]),
        ("unreachable endpoint", {"S3_ENDPOINT": "dead", "S3_MAX_ATTEMPTS": "2", "S3_CONNECT_TIMEOUT": "1"},
         ["cannot reach the S3 endpoint", "http://127.0.0.1:"]),
        ("missing bucket", {"DATA_URL": "s3://no-such-bucket-for-data/mnist"},
         ["no-such-bucket-for-data", "does not exist"]),
        ("no DATA_URL", {"DATA_URL": ""}, ["DATA_URL is not set"]),
    ],
)
def test_prepare_data_bad_environment(run_trainer, bucket, problem, env, expect):
    env = {"DATA_URL": f"s3://{bucket}/data/mnist", **env}
    if env.get("S3_ENDPOINT") == "dead":
        env["S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = run_trainer("prepare-data", "--source", "digits", env=env, timeout=120)
    assert proc.returncode == 2, (problem, proc.stderr)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for text in expect:
        assert text in line, (problem, line)
    assert time.monotonic() - start < 60


def test_help_names_default_source(run_trainer):
    proc = run_trainer("prepare-data", "--help", check=True)
    flat = "".join(proc.stdout.split())
    assert sources.DEFAULT_SOURCE in flat and "digits" in flat and "DATA_URL" in flat


def test_prepare_data_memory_does_not_grow_with_the_source():
    """Streamed shard by shard: 10x the images, the same peak (the whole source in memory would add ~40 MB of
    pixels and its copies). Peak RSS from the kernel, for a real prepare-data process each."""
    from bench.prepare_memory import prepare_peak

    small, large = prepare_peak(5_000, test_images=1_000), prepare_peak(50_000, test_images=1_000)
    assert large - small < 15e6, (small, large)
