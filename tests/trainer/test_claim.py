"""Model version numbers cannot collide: a publisher claims its number with a conditional
write (`If-None-Match: *` on S3, an exclusive link on a folder) and moves to N+1 on conflict. Run on the
embedded S3 server (moto 5.2.5, which honours the condition) and on a local folder."""

from __future__ import annotations

import json
import threading

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.helpers.versions import make_dir, same_tree
from trainer import publish
from trainer.publish import CLAIM, claim_version, complete_versions, fetch_dir, publish_dir
from trainer.store import open_store


def test_embedded_server_honours_if_none_match(s3_server, bucket):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_create_writes_only_once(models):
    assert models.create("1/_CLAIM", b"a") is True
    assert models.create("1/_CLAIM", b"b") is False
    assert models.get_bytes("1/_CLAIM") == b"a"


def test_claim_skips_taken_numbers(models, tmp_path):
    publish_dir(make_dir(tmp_path / "v1"), models.child("1"))
    assert claim_version(models, owner="a") == 2
    assert claim_version(models, owner="b") == 3  # 2 is claimed, though nothing is published there yet
    assert json.loads(models.get_bytes(f"3/{CLAIM}"))["owner"] == "b"
    assert complete_versions(models) == [1]  # a claim is not a version


def _in_step(monkeypatch, parties: int) -> threading.Barrier:
    """Every publisher lists the store, then all go on at once: they all see the same next number."""
    barrier = threading.Barrier(parties, timeout=60)
    listing = publish.next_version

    def listed_together(store):
        n = listing(store)
        barrier.wait()
        return n

    monkeypatch.setattr(publish, "next_version", listed_together)
    return barrier


def test_publishers_that_list_together_get_distinct_numbers(models, monkeypatch):
    _in_step(monkeypatch, 4)
    got: list[int] = []
    threads = [threading.Thread(target=lambda i=i: got.append(claim_version(models, f"p{i}"))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == [1, 2, 3, 4]


def test_two_trainings_finishing_together_publish_two_whole_versions(models, monkeypatch, tmp_path):
    """What `train`'s export does (claim, then publish), by two publishers at the same moment."""
    sources = [make_dir(tmp_path / f"src{i}", seed=i + 1, files=4) for i in range(2)]
    _in_step(monkeypatch, 2)
    published: dict[int, int] = {}
    errors: list[BaseException] = []

    def export(i: int) -> None:
        try:
            version = claim_version(models, owner=f"run-{i}")
            publish_dir(sources[i], models.child(str(version)))
            published[i] = version
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=export, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(published.values()) == [1, 2] and complete_versions(models) == [1, 2]
    for i, version in published.items():  # each version holds exactly its own publisher's bytes
        fetched = fetch_dir(models.child(str(version)), tmp_path / f"fetched{version}")
        assert same_tree(fetched, sources[i])


def test_two_real_trainings_on_one_model_url(s3_server, bucket):
    """Two `train` processes (the stack's TFJob and a retrain, say) started together, one MODEL_URL."""
    import subprocess
    import sys

    from tests.conftest import ROOT, trainer_env

    data = f"s3://{bucket}/data/mnist"
    env = trainer_env(s3_server, DATA_URL=data)
    subprocess.run(
        [sys.executable, "-m", "trainer", "prepare-data", "--source", "digits"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "trainer", "train", "--epochs", "1"],
            cwd=ROOT,
            env={**env, "RUN_URL": f"s3://{bucket}/runs/r{i}", "MODEL_URL": f"s3://{bucket}/models/mnist"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["model_version"] for r in results) == [1, 2]
    assert len({r["export_url"] for r in results}) == 2
    assert complete_versions(open_store(f"s3://{bucket}/models/mnist")) == [1, 2]
