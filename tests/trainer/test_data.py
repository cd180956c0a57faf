"""prepare-data and the dataset reader, through the real S3 server and real TensorFlow."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time

import boto3
import numpy as np
import pytest

from demo.s3server import free_port
from tests.conftest import ROOT, trainer_env
from trainer import data
from trainer.errors import UserError
from trainer.store import open_store


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def digits():
    return data.digits_arrays()


def test_digits_source_is_fixed_and_mnist_shaped(digits):
    assert digits["x_train"].shape == (1437, 28, 28) and digits["x_test"].shape == (360, 28, 28)
    assert digits["x_train"].dtype == np.uint8 and digits["y_test"].dtype == np.int64
    assert set(np.unique(digits["y_test"])) == set(range(10))
    # MNIST framing: the digit fills a 20x20 box, 4 blank pixels around it.
    assert digits["x_train"][:, :4].max() == 0 and digits["x_train"][:, 4:24, 4:24].max() == 255
    assert data.fingerprint(digits) == data.fingerprint(data.digits_arrays())  # same split every time


@pytest.fixture
def prepared(bucket, digits, tmp_path):
    """The digits dataset under s3://<bucket>/data/mnist, written in-process (the CLI has its own test)."""
    np.savez(tmp_path / "digits.npz", **digits)
    store = open_store(f"s3://{bucket}/data/mnist", "DATA_URL")
    manifest = data.prepare(str(tmp_path / "digits.npz"), store, shards=4)
    return store, manifest


def test_prepare_data_cli_is_idempotent(run_trainer, bucket, s3_server):
    env = {"DATA_URL": f"s3://{bucket}/data/mnist"}
    first = run_trainer("prepare-data", "--source", "digits", env=env, check=True)
    result = last_json(first)
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
    second = last_json(run_trainer("prepare-data", "--source", "digits", env=env, check=True))
    assert second["written"] is False and "unchanged" in second["status"]
    assert second["fingerprint"] == result["fingerprint"]
    assert objects() == before

    # Another shard count is another layout: rewritten, and the old shards are gone.
    third = last_json(run_trainer("prepare-data", "--source", "digits", "--shards", "2", env=env, check=True))
    assert third["written"] is True and third["shards"] == 2
    assert sorted(k for k in objects() if "train-" in k) == [
        "data/mnist/train-00000-of-00002.tfrecord", "data/mnist/train-00001-of-00002.tfrecord"
    ]


def test_manifest_layout(prepared, digits):
    store, manifest = prepared
    assert manifest == data.read_manifest(store)
    assert manifest["format"] == 1 and manifest["image_shape"] == [28, 28, 1]
    assert manifest["fingerprint"] == data.fingerprint(digits)
    train = manifest["splits"]["train"]
    assert train["count"] == 1437 and sum(s["count"] for s in train["shards"]) == 1437
    listing = store.list()
    for shard in train["shards"]:
        assert listing[shard["name"]] == shard["size"]
        assert hashlib.sha256(store.get_bytes(shard["name"])).hexdigest() == shard["sha256"]
    assert manifest["arrays"]["test"]["name"] == "test.npz"


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

    def get_file(self, key, path):
        if key == self.held:
            self.started.set()
            assert self.release.wait(60)
        return self.inner.get_file(key, path)


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
    manifest = data.prepare(f"file://{tmp_path}/d.npz", store, shards=3)
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


def test_bad_sources_are_user_errors(tmp_path, run_trainer, bucket):
    env = {"DATA_URL": f"s3://{bucket}/data/bad"}
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.int64),
             x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros(0, np.int64))
    np.savez(tmp_path / "layout.npz", images=np.zeros((5, 28, 28), np.uint8))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((5, 32, 32), np.uint8), y_train=np.zeros(5, np.int64),
             x_test=np.zeros((5, 32, 32), np.uint8), y_test=np.zeros(5, np.int64))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    cases = {
        "empty.npz": "empty dataset",
        "layout.npz": "wrong npz layout: missing x_train",
        "shape.npz": "not [N,28,28]",
        "garbage.npz": "the dataset source is not an .npz archive",
        "absent.npz": "dataset source not found",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            data.open_source(str(tmp_path / name))
    # Through the CLI: one line, exit 2, nothing written.
    proc = run_trainer("prepare-data", "--source", str(tmp_path / "empty.npz"), env=env)
    assert proc.returncode == 2 and "error: empty dataset" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert open_store(env["DATA_URL"]).list() == {}


def not_npz_files(tmp_path, digits) -> dict:
    """Readable files that are not an mnist.npz, each with what the error must say it is."""
    import gzip
    import pickle
    import zipfile

    np.savez(tmp_path / "good.npz", **digits)
    good = (tmp_path / "good.npz").read_bytes()
    np.save(tmp_path / "x_train.npy", digits["x_train"])
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps(digits, protocol=4))
    (tmp_path / "page.npz").write_bytes(b"<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    (tmp_path / "mnist.npz.gz").write_bytes(gzip.compress(good))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    middle = len(good) // 2
    (tmp_path / "flipped.npz").write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    np.savez(tmp_path / "objects.npz", x_train=np.array([None] * 3, dtype=object), y_train=digits["y_train"],
             x_test=digits["x_test"], y_test=digits["y_test"])
    return {
        "x_train.npy": "is a single .npy array (np.save), not an .npz archive",
        "arrays.pkl": "is a Python pickle, not an .npz archive",
        "page.npz": "is an HTML or XML page",
        "mnist.npz.gz": "is gzip-compressed, not an .npz archive (decompress it first)",
        "empty.npz": "is an empty file, not an .npz archive",
        "cut.npz": "is a zip archive cut short or damaged",
        "flipped.npz": "cannot read the dataset as .npz",
        "other.zip": "wrong npz layout: missing x_train, y_train, x_test, y_test (has no .npy arrays)",
        "objects.npz": "wrong npz layout: x_train holds Python objects (pickled data), not numbers",
    }


def test_sources_that_are_not_npz_get_one_clear_error(tmp_path, digits, run_trainer, bucket):
    store = open_store(f"file://{tmp_path}/out", "DATA_URL")
    for name, message in not_npz_files(tmp_path, digits).items():
        with pytest.raises(UserError) as e:
            data.prepare(str(tmp_path / name), store)
        assert message in str(e.value) and str(tmp_path / name) in str(e.value), (name, str(e.value))
        assert "allow_pickle" not in str(e.value), name
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # Through the CLI: one line and exit 2, as docs/trainer.md promises.
    env = {"DATA_URL": f"s3://{bucket}/data/bad"}
    for name in ("x_train.npy", "arrays.pkl"):
        proc = run_trainer("prepare-data", "--source", str(tmp_path / name), env=env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: the dataset source is ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr and "allow_pickle" not in proc.stderr
    assert open_store(env["DATA_URL"]).list() == {}


def test_source_url_is_downloaded(tmp_path, digits):
    """An http(s) source is fetched (from a local server here: no internet at test time)."""
    np.savez(tmp_path / "mnist.npz", **digits)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with data.open_source(f"{url}/mnist.npz") as opened:
            assert opened.fingerprint() == data.fingerprint(digits)
        with pytest.raises(UserError, match="cannot download") as e:
            data.open_source(f"{url}/missing.npz")
        assert "--source digits" in e.value.fix
    finally:
        server.shutdown()


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
    assert data.DEFAULT_SOURCE in flat and "digits" in flat and "DATA_URL" in flat



def test_prepare_data_memory_does_not_grow_with_the_source():
    """Streamed shard by shard: 10x the images, the same peak (the whole source in memory would add ~40 MB of
    pixels and its copies). Peak RSS from the kernel, for a real prepare-data process each."""
    from bench.prepare_memory import prepare_peak

    small, large = prepare_peak(5_000, test_images=1_000), prepare_peak(50_000, test_images=1_000)
    assert large - small < 15e6, (small, large)
