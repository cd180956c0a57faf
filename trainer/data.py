"""`prepare-data`, the dataset format on the store, and reading it back into `tf.data`.

Layout under DATA_URL (manifest.json is written last, so a dataset without it does not exist):
  train-00000-of-00004.tfrecord ...   tf.train.Example records: image (784 raw uint8 bytes), label (int64)
  test-00000-of-00004.tfrecord ...
  test.npz                            the test split as numpy arrays (x uint8 [N,28,28], y int64) for predict
  manifest.json                       counts, shard names, sizes and sha256, and the source's fingerprint

Reading from S3: the worker's shards are downloaded in parallel into a local cache (content-addressed by
sha256, hashed on the way in, reused while unchanged), then read by tf.data with parallel interleave, batched
parsing and prefetch. A local store (file:///) is read in place. Every shard is checked against its sha256
before use.

TensorFlow is imported inside functions only: `test_arrays` (predict) runs with numpy alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np

from trainer import cli
from trainer.errors import UserError
from trainer.publish import parallel_map, sha256_file
from trainer.store import NotFound, Store, open_store

DEFAULT_SOURCE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MANIFEST = "manifest.json"
TEST_ARRAYS = "test.npz"
FORMAT = 1
IMAGE_SHAPE = [28, 28, 1]
NUM_CLASSES = 10
SPLITS = ("train", "test")
DIGITS_TEST_COUNT = 360
DIGITS_SEED = 0
DIGITS_FILE = "digits.npz"  # package data: the 8x8 digits and their split (see digits_arrays)
_KEYS = ("x_train", "y_train", "x_test", "y_test")
_SHARD = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.tfrecord$")


def add_arguments(parser) -> None:
    cli.env_arg(parser, "--data-url", "DATA_URL", "where to write the dataset: s3://bucket/prefix or file:///path")
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="an https:// URL or a path of an mnist.npz-layout file (x_train, y_train, x_test, y_test), "
        "or 'digits' for scikit-learn's bundled digits upscaled to 28x28 (offline) (default: %(default)s)",
    )
    parser.add_argument("--shards", type=int, default=4, help="TFRecord files per split (default: 4)")


def run(args) -> dict:
    if args.shards < 1:
        raise UserError("--shards must be at least 1", args.shards, "pass a positive number such as 4")
    store = open_store(args.data_url, "DATA_URL")
    store.check()
    manifest, written = _prepare(args.source, store, args.shards)
    return {
        "data_url": store.url,
        "written": written,
        "status": "written" if written else "unchanged: same source already prepared, nothing rewritten",
        "fingerprint": manifest["fingerprint"],
        "train": manifest["splits"]["train"]["count"],
        "test": manifest["splits"]["test"]["count"],
        "shards": len(manifest["splits"]["train"]["shards"]),
    }


# --- sources ------------------------------------------------------------------------------------------------


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N,h,w] images to [N,size,size] (numpy only)."""
    _, h, w = images.shape
    ys, xs = np.linspace(0, h - 1, size), np.linspace(0, w - 1, size)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = images[:, y0][:, :, x0] * (1 - wx) + images[:, y0][:, :, x1] * wx
    bottom = images[:, y1][:, :, x0] * (1 - wx) + images[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def digits_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 bundled 8x8 digits, upscaled to a 20x20 box centred in 28x28 as MNIST is, split
    into 1,437 train and 360 test images (stratified by label, fixed seed).

    The 8x8 images (integers 0..16) and the split ship with this package as `digits.npz` (57 kB), so the
    trainer image needs no scikit-learn (and its SciPy) for them. It holds exactly what
    `sklearn.datasets.load_digits()` and `train_test_split(test_size=360, stratify=y, random_state=0)` give
    with scikit-learn 1.9.1; tests/trainer/test_digits.py checks that and rewrites the file when run as a
    script. Licence: `digits.LICENSE.txt` beside it (scikit-learn's BSD-3; the data come from the UCI
    "Optical Recognition of Handwritten Digits" set, Alpaydin and Kaynak, 1998)."""
    with (resources.files("trainer") / DIGITS_FILE).open("rb") as f, np.load(f) as shipped:
        raw = {key: shipped[key] for key in _KEYS}
    out = {}
    for split in SPLITS:
        images = _resize(raw[f"x_{split}"].astype(np.float64) / 16.0, 20)
        x = np.zeros((len(images), 28, 28), np.uint8)
        x[:, 4:24, 4:24] = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
        out[f"x_{split}"], out[f"y_{split}"] = x, raw[f"y_{split}"].astype(np.int64)
    return out


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UserError("cannot download the dataset", url,
                        f"check the URL and network, or pass --source digits or a local path ({e})") from e


def load_source(source: str) -> dict[str, np.ndarray]:
    """The four arrays of the source: 'digits', an http(s) URL (downloaded) or a path / file:// URL."""
    if source == "digits":
        return digits_arrays()
    if source.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "source.npz"
            _download(source, path)
            return _read_npz(path, source)
    path = Path(source[len("file://"):] if source.startswith("file://") else source)
    if not path.is_file():
        raise UserError("dataset source not found", source,
                        "pass an existing .npz path, an https:// URL, or --source digits")
    return _read_npz(path, source)


def _read_npz(path: Path, source: str) -> dict[str, np.ndarray]:
    layout = "an .npz with x_train [N,28,28], y_train [N], x_test [M,28,28], y_test [M] (mnist.npz layout)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                has = ", ".join(npz.files) or "nothing"
                raise UserError(f"wrong npz layout: missing {', '.join(missing)} (has {has})",
                                source, f"provide {layout}")
            arrays = {k: npz[k] for k in _KEYS}
    except UserError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise UserError("cannot read the dataset as .npz", source, f"provide {layout} ({e})") from e
    return _validate(arrays, source, layout)


def _validate(arrays: dict[str, np.ndarray], source: str, layout: str = "mnist.npz layout") -> dict:
    out = {}
    for split in SPLITS:
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        y = y.reshape(-1) if y.ndim == 2 and y.shape[-1] == 1 else y
        if len(x) == 0 or len(y) == 0:
            raise UserError(f"empty dataset: the {split} split has no images", source,
                            "provide a dataset with images in both x_train and x_test")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise UserError(f"wrong npz layout: x_{split} has shape {list(x.shape)}, not [N,28,28]", source,
                            f"provide {layout}")
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(f"wrong npz layout: y_{split} has shape {list(y.shape)} for {len(x)} images",
                            source, f"provide {layout}")
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            raise UserError(f"wrong npz layout: x_{split} must be integers 0..255 (is {x.dtype})", source,
                            f"provide {layout}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
            raise UserError(f"wrong npz layout: y_{split} must be labels 0..{NUM_CLASSES - 1}", source,
                            f"provide {layout}")
        out[f"x_{split}"], out[f"y_{split}"] = x.astype(np.uint8), y.astype(np.int64)
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in _KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- writing ------------------------------------------------------------------------------------------------


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def _write_tfrecord(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(x, y, strict=True):
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }))
            writer.write(example.SerializeToString())


def _unchanged(store: Store, fp: str, shards: int) -> dict | None:
    """The existing manifest if it describes this source and shard count and all its files are there."""
    try:
        manifest = read_manifest(store)
    except UserError:
        return None
    if manifest.get("fingerprint") != fp or len(manifest["splits"]["train"]["shards"]) != shards:
        return None
    present = store.list()
    files = [s for split in SPLITS for s in manifest["splits"][split]["shards"]]
    files.append(manifest["arrays"]["test"])
    return manifest if all(present.get(f["name"]) == f["size"] for f in files) else None


def prepare(source: str, store: Store, shards: int = 4) -> dict:
    """Writes the dataset from `source` under `store`; returns the manifest. Same source again: no writes."""
    return _prepare(source, store, shards)[0]


def _prepare(source: str, store: Store, shards: int) -> tuple[dict, bool]:
    arrays = load_source(source)
    fp = fingerprint(arrays)
    existing = _unchanged(store, fp, shards)
    if existing is not None:
        return existing, False
    # A different dataset is replacing this one: drop the old manifest first, so readers see "no dataset"
    # rather than a manifest whose shards are being overwritten.
    store.delete([MANIFEST])
    manifest = {"format": FORMAT, "source": source, "fingerprint": fp, "image_shape": IMAGE_SHAPE,
                "splits": {}, "arrays": {}}
    with tempfile.TemporaryDirectory(prefix="prepare-data-") as tmp:
        tmp = Path(tmp)
        jobs = []
        for split in SPLITS:
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            n = max(1, min(shards, len(x)))
            entries = []
            for i, idx in enumerate(np.array_split(np.arange(len(x)), n)):
                name = shard_name(split, i, n)
                _write_tfrecord(tmp / name, x[idx], y[idx])
                entries.append({"name": name, "count": int(len(idx)), "size": (tmp / name).stat().st_size,
                                "sha256": sha256_file(tmp / name)})
                jobs.append(name)
            manifest["splits"][split] = {"count": int(len(x)), "shards": entries}
        with open(tmp / TEST_ARRAYS, "wb") as f:
            np.savez(f, x=arrays["x_test"], y=arrays["y_test"])
        manifest["arrays"]["test"] = {"name": TEST_ARRAYS, "size": (tmp / TEST_ARRAYS).stat().st_size,
                                      "sha256": sha256_file(tmp / TEST_ARRAYS)}
        jobs.append(TEST_ARRAYS)
        parallel_map(lambda name: store.put_file(name, tmp / name), jobs)
    store.put_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    # Shards of an earlier preparation with another shard count are no longer referenced: remove them.
    stale = [k for k in store.list() if _SHARD.match(k) and k not in jobs]
    store.delete(stale)
    return manifest, True


# --- reading ------------------------------------------------------------------------------------------------


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
    return path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]


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


def default_cache_dir() -> Path:
    return Path(os.environ.get("DATA_CACHE_DIR") or Path(tempfile.gettempdir()) / "trainer-data-cache")


def local_shards(store: Store, entries: list[dict], cache_dir=None) -> list[Path]:
    """Local, verified files for the given shard entries: in place for a local store, else downloaded in
    parallel into `cache_dir` as <sha256>.tfrecord (an intact cached copy is reused)."""
    if not entries:
        return []
    local = store.local_path(entries[0]["name"])
    if local is not None:
        def check_local(entry: dict) -> Path:
            path = store.local_path(entry["name"])
            if not path.is_file():
                raise _bad_shard(store, entry["name"], "missing")
            if not _verify(path, entry):
                raise _bad_shard(store, entry["name"], "corrupt (checksum mismatch)")
            return path

        return parallel_map(check_local, entries)

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
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
            digest = store.get_file(entry["name"], path)
        except NotFound as e:
            raise _bad_shard(store, entry["name"], "missing") from e
        intact = path.stat().st_size == entry["size"] and (digest or sha256_file(path)) == entry["sha256"]
        if not intact:
            path.unlink(missing_ok=True)
            raise _bad_shard(store, entry["name"], "corrupt (checksum mismatch)")
        _write_stamp(stamp, path)
        return path

    return parallel_map(fetch, entries)


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


def read_files(paths: list, *, shard_index: int = 0, num_shards: int = 1):
    """tf.data over local TFRecord files: parallel interleaved reads, batched parsing, prefetch. With
    num_shards > 1 the records (in file order) are split between readers."""
    import tensorflow as tf

    paths = [str(p) for p in paths]
    if num_shards > 1:
        # Record-level split needs one fixed order: read the files in sequence, keep every num_shards-th.
        records = tf.data.TFRecordDataset(paths).shard(num_shards, shard_index)
    else:
        records = tf.data.Dataset.from_tensor_slices(paths).interleave(
            lambda f: tf.data.TFRecordDataset(f),
            cycle_length=max(1, min(len(paths), 8)),
            block_length=64,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return parse_records(records).prefetch(tf.data.AUTOTUNE)


def dataset(store: Store, split: str, *, shard_index: int = 0, num_shards: int = 1, cache_dir=None):
    """(tf.data.Dataset of (image float32 [28,28,1], label int64), number of examples) for this reader.

    Readers get whole shard files, `shards[shard_index::num_shards]`; with more readers than files, every
    reader gets all files and keeps every num_shards-th record instead."""
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
    if num_shards <= len(shards):
        mine = shards[shard_index::num_shards]
        paths = local_shards(store, mine, cache_dir)
        return read_files(paths), sum(int(s["count"]) for s in mine)
    paths = local_shards(store, shards, cache_dir)
    count = len(range(shard_index, int(info["count"]), num_shards))
    return read_files(paths, shard_index=shard_index, num_shards=num_shards), count


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
