"""The dataset format on the store, and reading it back into `tf.data` (`prepare-data` writes it:
`trainer.prepare`).

Layout under DATA_URL (manifest.json is written last, so a dataset without it does not exist):
  train-00000-of-00004.tfrecord ...   tf.train.Example records: image (784 raw uint8 bytes), label (int64)
  test-00000-of-00004.tfrecord ...
  test.npz                            the test split as numpy arrays (x uint8 [N,28,28], y int64) for predict
  manifest.json                       counts, shard names, sizes and sha256, and the source's fingerprint

Reading from S3: the worker's shards are downloaded in order, one stream ahead of the reads, starting before
the tf.data graph is built, into a local cache (content-addressed by sha256, hashed on the way in, reused while
unchanged), and tf.data starts reading each shard as soon as it has been verified, while the next ones are
still downloading (docs/performance.md has how close to local disk a cold first pass gets). No record of a
shard is read before its size and sha256 have matched the manifest; a shard that fails the check stops the
iteration, and `input_errors()` turns that into the `UserError` that names it. A local store (file:///) is
checked, then read in place.

TensorFlow is imported inside functions only: `test_arrays` (predict) runs with numpy alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.errors import UserError
from trainer import scratch
from trainer.publish import get_checked, matches, parallel_map
from trainer.store import Store
from trainer.storeerrors import NotFound

MANIFEST = "manifest.json"
TEST_ARRAYS = "test.npz"
FORMAT = 1
IMAGE_SHAPE = [28, 28, 1]
NUM_CLASSES = 10
SPLITS = ("train", "test")


def read_manifest(store: Store) -> dict:
    try:
        raw = store.get_bytes(MANIFEST)
    except NotFound as e:
        raise UserError("no dataset: manifest.json is missing", store.url_of(MANIFEST),
                        "run `python -m trainer prepare-data` with this DATA_URL first") from e
    try:
        manifest = json.loads(raw)
        splits = manifest["splits"]
        ok = manifest.get("format") == FORMAT and all(
            isinstance(splits[s]["count"], int) and isinstance(splits[s]["shards"], list) for s in SPLITS
        ) and isinstance(manifest["arrays"]["test"]["name"], str)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UserError("unreadable or unknown-format manifest.json", store.url_of(MANIFEST),
                        "run `python -m trainer prepare-data` again to rewrite the dataset")
    return manifest


def _bad_shard(store: Store, name: str, problem: str) -> UserError:
    return UserError(f"{problem} shard", store.url_of(name),
                     "run `python -m trainer prepare-data` again to rewrite the dataset")


def _verify(path: Path, entry: dict) -> bool:
    return matches(path, entry["size"], entry["sha256"])


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _write_stamp(stamp: Path, path: Path) -> None:
    """Records that `path` was hashed and matched, as of its size, mtime and inode (a cached shard is named by
    its sha256, so re-hashing it on every open buys nothing while it is unchanged)."""
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(_file_id(path))
    os.replace(tmp, stamp)


def _stamp_matches(stamp: Path, path: Path) -> bool:
    try:
        return stamp.read_text() == _file_id(path)
    except OSError:
        return False


# Shards downloading at once. One stream runs ahead of tf.data's reads (measured here: 300 MB/s from a local S3
# server against about 120 MB/s of parsing on 2 cores; a training step consumes far less), and a second one
# only takes CPU from the parsing (docs/performance.md, "Cold reads").
FETCH_AHEAD = 1


def _fetcher(store: Store, cache_dir=None):
    """fetch(entry) -> the local, verified path of a shard entry: in place for a local store, else a copy in
    the cache as <sha256>.tfrecord (an intact cached copy is reused)."""
    if store.local_path(MANIFEST) is not None:
        def check_local(entry: dict) -> Path:
            path = store.local_path(entry["name"])
            if not path.is_file():
                raise _bad_shard(store, entry["name"], "missing")
            if not _verify(path, entry):
                raise _bad_shard(store, entry["name"], "corrupt (checksum mismatch)")
            return path

        return check_local

    cache = Path(cache_dir) if cache_dir is not None else scratch.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    def fetch(entry: dict) -> Path:
        path = cache / f"{entry['sha256']}.tfrecord"
        stamp = path.with_name(path.name + ".verified")
        if path.is_file():
            if _stamp_matches(stamp, path):
                return path  # hashed when it was cached, unchanged since
            if _verify(path, entry):
                _write_stamp(stamp, path)
                return path
        try:
            intact = get_checked(store, entry["name"], path, entry["size"], entry["sha256"])
        except NotFound as e:
            raise _bad_shard(store, entry["name"], "missing") from e
        if not intact:
            path.unlink(missing_ok=True)
            raise _bad_shard(store, entry["name"], "corrupt (checksum mismatch)")
        _write_stamp(stamp, path)
        return path

    return fetch


def local_shards(store: Store, entries: list[dict], cache_dir=None) -> list[Path]:
    """Local, verified files for the given shard entries, all at once (in parallel)."""
    return parallel_map(_fetcher(store, cache_dir), entries) if entries else []


_failures: list[UserError] = []  # shards that failed their check inside a tf.data iteration, newest last
_failures_lock = threading.Lock()


class ShardFeed:
    """Verified local paths of `entries`, in order, as each becomes ready: `ahead` shards download at once, in
    order, from the moment the feed is made (so they overlap building the tf.data graph). `path(i)` blocks
    until shard i has been fetched and checked (instantly on later epochs); a shard that failed raises its
    `UserError` there."""

    def __init__(self, store: Store, entries: list[dict], cache_dir=None, ahead: int = FETCH_AHEAD):
        fetch = _fetcher(store, cache_dir)
        pool = ThreadPoolExecutor(max(1, min(ahead, len(entries))), thread_name_prefix="shard-fetch")
        self._futures = [pool.submit(fetch, entry) for entry in entries]  # run first in, first out
        pool.shutdown(wait=False)  # its threads end once every shard is fetched

    def path(self, index: int) -> Path:
        try:
            return self._futures[index].result()
        except UserError as e:
            with _failures_lock:
                _failures.append(e)
            raise


@contextmanager
def input_errors():
    """Inside: a tf.data error caused by a shard that failed its check (see `ShardFeed`) is raised as that
    shard's `UserError` (naming the shard and the fix) instead of TensorFlow's wrapped traceback."""
    with _failures_lock:
        _failures.clear()
    try:
        yield
    except Exception as e:
        with _failures_lock:
            failure = _failures[-1] if _failures else None
        if failure is None or isinstance(e, UserError):
            raise
        raise failure from e


def parse_records(records, batch: int = 256):
    """TFRecord strings -> (image float32 [28,28,1] in [0,1], label int64). Parses a batch at a time (far
    cheaper per record than one parse call each), then unbatches."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        images = tf.io.decode_raw(features["image"], tf.uint8)
        images = tf.cast(tf.reshape(images, [-1, *IMAGE_SHAPE]), tf.float32) / 255.0
        return images, features["label"]

    return records.batch(batch).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _examples(files):
    """Parsed examples of `files`, a tf.data.Dataset of (local TFRecord path, first, end): records first..end-1
    of each file (end -1: to its end), file after file, prefetched. Each file is parsed on its own, so its last
    records come out without waiting for the next file."""
    import tensorflow as tf

    def part(path, first, end):
        records = tf.data.TFRecordDataset(path, buffer_size=1 << 20).skip(first).take(end - first)
        return parse_records(records)

    return files.flat_map(part).prefetch(tf.data.AUTOTUNE)


def _bounds(paths: list, bounds: list[tuple[int, int]] | None) -> tuple[list[int], list[int]]:
    pairs = bounds if bounds is not None else [(0, -1)] * len(paths)  # take(-1): the whole file
    return [int(a) for a, _ in pairs], [int(b) if b >= 0 else a - 1 for a, b in pairs]


def read_files(paths: list, *, bounds: list[tuple[int, int]] | None = None):
    """tf.data over local TFRecord files, file after file (the order the S3 path reads them in), batched
    parsing, prefetch. `bounds` (one `(first, end)` record range per file) reads only those records of each
    file, in file order."""
    import tensorflow as tf

    paths = [str(p) for p in paths]
    first, end = _bounds(paths, bounds)
    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(first, tf.int64), tf.constant(end, tf.int64)))
    return _examples(files)


def read_feed(feed: ShardFeed, *, bounds: list[tuple[int, int]]):
    """tf.data over a `ShardFeed`: each shard is read (its `bounds` record range) as soon as it is verified,
    while later ones download."""
    import tensorflow as tf

    first, end = _bounds(list(bounds), bounds)

    def path(index):  # blocks a tf.data thread (not the caller) until that shard is checked
        return str(feed.path(int(index))).encode()

    def wait(index, a, b):
        local = tf.numpy_function(path, [index], tf.string, stateful=True, name="verified_shard")
        return tf.ensure_shape(local, []), a, b

    # A numpy_function map over the shard indices rather than Dataset.from_generator: the same wait, with
    # less graph to build before the first record (measured: docs/performance.md, "Cold reads").
    files = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(first), dtype=tf.int64), tf.constant(first, tf.int64), tf.constant(end, tf.int64)))
    return _examples(files.map(wait))


def share(counts: list[int], index: int, readers: int) -> list[tuple[int, int, int]]:
    """Reader `index`'s share of a split whose shard files hold `counts` records: `(file, first, end)` record
    ranges. The records, in file order, are cut into `readers` contiguous runs whose lengths differ by at most
    one, so every reader gets an equal share for any reader count, and touches only the files its run
    crosses: at most one more file than its share would fill. When the file count is a multiple of the reader
    count and the files are even (`prepare-data --shards`, as the stack sets it), each reader gets whole files
    instead, every `readers`-th one, which is as even."""
    if not (readers >= 1 and 0 <= index < readers):
        raise ValueError(f"shard_index {index} out of range for num_shards {readers}")
    if len(counts) % readers == 0:  # whole files, `files[index::readers]`, if that is as even
        strided = [sum(counts[i::readers]) for i in range(readers)]
        if max(strided) - min(strided) <= 1:
            return [(f, 0, counts[f]) for f in range(index, len(counts), readers)]
    total = sum(counts)
    lo, hi = index * total // readers, (index + 1) * total // readers
    out, start = [], 0
    for i, count in enumerate(counts):
        a, b = max(lo, start), min(hi, start + count)
        if a < b:
            out.append((i, a - start, b - start))
        start += count
    return out


def share_counts(info: dict, num_shards: int) -> list[int]:
    """Examples each of `num_shards` readers gets from a split's manifest entry, by `dataset`'s rule
    (`share`)."""
    counts = [int(s["count"]) for s in info["shards"]]
    return [sum(b - a for _, a, b in share(counts, i, num_shards)) for i in range(num_shards)]


def dataset(store: Store, split: str, *, shard_index: int = 0, num_shards: int = 1, cache_dir=None):
    """(tf.data.Dataset of (image float32 [28,28,1], label int64), number of examples) for this reader.

    Reader `shard_index` of `num_shards` gets an equal contiguous run of the split's records (`share`), and
    downloads only the shard files that run crosses. From S3 the downloads start here and the dataset reads
    each shard once it is verified: iterate it inside `input_errors()` so that a shard failing its check is
    reported by name. A local store is checked here, before it returns."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if not (num_shards >= 1 and 0 <= shard_index < num_shards):
        raise ValueError(f"shard_index {shard_index} out of range for num_shards {num_shards}")
    manifest = read_manifest(store)
    info = manifest["splits"][split]
    if info["count"] == 0 or not info["shards"]:
        raise UserError(f"empty dataset: the {split} split has no examples", store.url_of(MANIFEST),
                        "run `python -m trainer prepare-data` with a non-empty source")
    shards = info["shards"]
    mine = share([int(s["count"]) for s in shards], shard_index, num_shards)
    if not mine:
        return None, 0
    entries = [shards[i] for i, _, _ in mine]
    count = sum(b - a for _, a, b in mine)
    bounds = [(a, b) for _, a, b in mine]
    if store.local_path(MANIFEST) is not None:
        return read_files(local_shards(store, entries, cache_dir), bounds=bounds), count
    return read_feed(ShardFeed(store, entries, cache_dir), bounds=bounds), count


def test_arrays(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """The test split as numpy arrays (x uint8 [N,28,28], y int64), checked against the manifest. No TF."""
    entry = read_manifest(store)["arrays"]["test"]
    try:
        raw = store.get_bytes(entry["name"])
    except NotFound as e:
        raise _bad_shard(store, entry["name"], "missing") from e
    if len(raw) != entry["size"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise _bad_shard(store, entry["name"], "corrupt (checksum mismatch)")
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        return npz["x"], npz["y"]
