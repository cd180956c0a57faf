"""The dataset reader (trainer/data.py), through the real S3 server and real TensorFlow."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from common.errors import UserError
from tests.conftest import ROOT, trainer_env
from trainer import data
from trainer.prepare import prepare
from trainer.store import open_store


def collect(ds) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in ds.batch(512):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_workers_read_disjoint_shards_from_s3(prepared, digits, tmp_path):
    store, _ = prepared
    seen = []
    for index in range(2):
        ds, count = data.dataset(store, "train", shard_index=index, num_shards=2, cache_dir=tmp_path / "c")
        x, y = collect(ds)
        assert len(x) == len(y) == count
        assert x.shape[1:] == (28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        seen.append((x, y))
    assert len(seen[0][0]) + len(seen[1][0]) == 1437
    # Together the two workers saw exactly the training images, each once.
    got = sorted(hashlib.sha1(np.rint(img * 255).astype(np.uint8).tobytes()).hexdigest()
                 for x, _ in seen for img in x[..., 0])
    want = sorted(hashlib.sha1(img.tobytes()).hexdigest() for img in digits["x_train"])
    assert got == want


def test_more_workers_than_shards_splits_records(prepared, tmp_path):
    store, manifest = prepared
    counts = []
    labels = []
    for index in range(6):  # 6 readers, 4 shard files: record-level split
        ds, count = data.dataset(store, "test", shard_index=index, num_shards=6, cache_dir=tmp_path)
        _, y = collect(ds)
        assert len(y) == count == len(range(index, 360, 6))
        counts.append(count)
        labels.append(y)
    assert sum(counts) == 360
    all_labels = np.concatenate(labels)
    _, y_test = data.test_arrays(store)
    assert sorted(all_labels.tolist()) == sorted(y_test.tolist())


def test_cache_is_reused_and_checked(prepared, tmp_path):
    store, manifest = prepared
    cache = tmp_path / "cache"
    collect(data.dataset(store, "test", cache_dir=cache)[0])
    cached = sorted(p.name for p in cache.glob("*.tfrecord"))
    assert cached == sorted(f"{s['sha256']}.tfrecord" for s in manifest["splits"]["test"]["shards"])
    # Reused: works with the S3 copies gone.
    store.delete([s["name"] for s in manifest["splits"]["test"]["shards"]])
    ds, count = data.dataset(store, "test", cache_dir=cache)
    assert len(collect(ds)[1]) == count == 360
    # A damaged cache file is noticed (sha256) and fetched again, which now fails: the shard is missing.
    victim = cache / cached[0]
    victim.write_bytes(b"x" * victim.stat().st_size)
    with pytest.raises(UserError, match="missing shard") as e, data.input_errors():
        collect(data.dataset(store, "test", cache_dir=cache)[0])
    assert "prepare-data" in e.value.fix


@pytest.mark.parametrize("damage", ["other bytes, same size", "truncated"])
def test_corrupt_shard_is_refused(prepared, tmp_path, damage):
    store, manifest = prepared
    shard = manifest["splits"]["train"]["shards"][1]
    good = store.get_bytes(shard["name"])
    bad = bytes(b ^ 0xFF for b in good[:100]) + good[100:] if damage.startswith("other") else good[:-10]
    store.put_bytes(shard["name"], bad)
    with pytest.raises(UserError) as e, data.input_errors():
        collect(data.dataset(store, "train", shard_index=1, num_shards=2, cache_dir=tmp_path / "cache")[0])
    assert "corrupt" in str(e.value) and "checksum" in str(e.value) and shard["name"] in str(e.value)
    assert "prepare-data" in e.value.fix
    # The bad download is not kept; the worker's other, intact shard is (its download ran alongside).
    intact = manifest["splits"]["train"]["shards"][3]["sha256"]
    deadline = time.monotonic() + 60
    while not (tmp_path / "cache" / f"{intact}.tfrecord.verified").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [p.name for p in (tmp_path / "cache").glob("*.tfrecord")] == [f"{intact}.tfrecord"]
    # Worker 0's shards are intact and still readable.
    ds, count = data.dataset(store, "train", shard_index=0, num_shards=2, cache_dir=tmp_path / "cache")
    assert len(collect(ds)[1]) == count


class HeldStore:
    """The S3 store, with the download of one shard held until `release` is set (to catch the reader
    reading ahead of the checks)."""

    def __init__(self, inner, held: str):
        self.inner, self.held = inner, held
        self.release, self.started = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_file(self, key, path, checked=False):
        if key == self.held:
            self.started.set()
            assert self.release.wait(60)
        return self.inner.get_file(key, path, checked)


def test_reads_each_shard_once_verified_while_the_next_downloads(prepared, tmp_path):
    store, manifest = prepared
    shards = manifest["splits"]["train"]["shards"]
    held = HeldStore(store, shards[1]["name"])
    ds, count = data.dataset(held, "train", cache_dir=tmp_path / "cache")
    it = iter(ds)
    first = [next(it) for _ in range(shards[0]["count"])]  # all of shard 0 while shard 1 cannot arrive
    assert held.started.is_set() and not held.release.is_set()
    assert len(first) == shards[0]["count"]
    held.release.set()
    rest = sum(1 for _ in it)
    assert len(first) + rest == count == 1437


def test_a_corrupt_later_shard_stops_the_stream_before_its_records(prepared, tmp_path):
    store, manifest = prepared
    shards = manifest["splits"]["train"]["shards"]
    good = store.get_bytes(shards[2]["name"])
    store.put_bytes(shards[2]["name"], good[:-1] + bytes([good[-1] ^ 1]))  # one bit, in the last record
    seen = 0
    with pytest.raises(UserError, match="corrupt") as e, data.input_errors():
        for _ in data.dataset(store, "train", cache_dir=tmp_path / "cache")[0]:
            seen += 1
    assert shards[2]["name"] in str(e.value)
    assert seen == shards[0]["count"] + shards[1]["count"]  # shards 0 and 1, not one record of shard 2


def test_missing_shard_and_missing_manifest(prepared, bucket, tmp_path):
    store, manifest = prepared
    store.delete([manifest["splits"]["train"]["shards"][0]["name"]])
    with pytest.raises(UserError, match="missing shard"), data.input_errors():
        collect(data.dataset(store, "train", cache_dir=tmp_path / "cache")[0])
    empty = open_store(f"s3://{bucket}/data/nothing-here", "DATA_URL")
    with pytest.raises(UserError) as e:
        data.dataset(empty, "train")
    assert "manifest.json is missing" in str(e.value) and "nothing-here" in str(e.value)
    assert "prepare-data" in e.value.fix
    with pytest.raises(UserError, match="manifest.json is missing"):
        data.test_arrays(empty)
    store.put_bytes("manifest.json", b"{not json")
    with pytest.raises(UserError, match="unreadable"):
        data.read_manifest(store)


def test_local_store_end_to_end(tmp_path, digits):
    np.savez(tmp_path / "d.npz", **digits)
    store = open_store(f"file://{tmp_path}/dataset", "DATA_URL")
    manifest = prepare(f"file://{tmp_path}/d.npz", store, shards=3)
    assert sorted(p.name for p in (tmp_path / "dataset").iterdir())[-1] == "train-00002-of-00003.tfrecord"
    ds, count = data.dataset(store, "train", shard_index=2, num_shards=3)
    assert count == manifest["splits"]["train"]["shards"][2]["count"] and len(collect(ds)[1]) == count
    x, y = data.test_arrays(store)
    np.testing.assert_array_equal(x, digits["x_test"])
    np.testing.assert_array_equal(y, digits["y_test"])
    # Damage in place is caught too.
    shard = tmp_path / "dataset" / manifest["splits"]["train"]["shards"][0]["name"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    with pytest.raises(UserError, match="corrupt"):
        data.dataset(store, "train")


def test_test_arrays_need_no_tensorflow(prepared, s3_server):
    store, _ = prepared
    code = (
        "import sys; from trainer.store import open_store; from trainer.data import test_arrays; "
        f"x, y = test_arrays(open_store({store.url!r})); "
        "print(x.shape, y.dtype, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=trainer_env(s3_server),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(360,", "28,", "28)", "int64", "False", "False"]
