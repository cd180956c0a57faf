"""`prepare-data`, the dataset format on the store, and reading it back into `tf.data`.

Layout under DATA_URL (manifest.json is written last, so a dataset without it does not exist):
  train-00000-of-00004.tfrecord ...   tf.train.Example records: image (784 raw uint8 bytes), label (int64)
  test-00000-of-00004.tfrecord ...
  test.npz                            the test split as numpy arrays (x uint8 [N,28,28], y int64) for predict
  manifest.json                       counts, shard names, sizes and sha256, and the source's fingerprint

Reading from S3: the worker's shards are downloaded in order, a few at a time, into a local cache
(content-addressed by sha256, hashed on the way in, reused while unchanged), and tf.data starts reading each
shard as soon as it has been verified, while the next ones are still downloading (so a cold first epoch runs
at about the speed of local disk). No record of a shard is read before its size and sha256 have matched the
manifest; a shard that fails the check stops the iteration, and `input_errors()` turns that into the
`UserError` that names it. A local store (file:///) is checked, then read in place.

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
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
    from trainer import rules

    for p in rules.shards_problems(args.shards):
        raise UserError(p.message(), p.value, p.fix)
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


class _Column:
    """One array of a source, read front to back a block of rows at a time, as uint8 images [n,28,28] or
    int64 labels [n]: from memory, or streamed out of an `.npy` member of an `.npz` (a zip) without loading the
    whole array, so prepare-data's memory does not grow with the dataset."""

    def __init__(self, key: str, shape: tuple, dtype: np.dtype, open_rows):
        self.key, self.shape, self.dtype = key, tuple(shape), np.dtype(dtype)
        self._open_rows = open_rows  # () -> read(n) returning the next n rows as an array

    @property
    def count(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def out_shape(self) -> tuple:
        return (self.count, 28, 28) if self.key.startswith("x_") else (self.count,)

    @property
    def out_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.key.startswith("x_") else np.dtype(np.int64)

    def blocks(self, sizes):
        """The rows in consecutive blocks of the given sizes, normalized (uint8 [n,28,28] / int64 [n])."""
        read = self._open_rows()
        for n in sizes:
            rows = read(n)
            if len(rows) != n:
                raise EOFError(f"{self.key} ends after fewer rows than its header says")
            yield rows.reshape((n, *self.out_shape[1:])).astype(self.out_dtype, copy=False)


def _block_sizes(total: int, block: int = 4096):
    for start in range(0, total, block):
        yield min(block, total - start)


def _memory_column(key: str, array: np.ndarray) -> _Column:
    array = np.asarray(array)

    def open_rows():
        position = [0]

        def read(n: int) -> np.ndarray:
            rows = array[position[0]:position[0] + n]
            position[0] += len(rows)
            return rows

        return read

    return _Column(key, array.shape, array.dtype, open_rows)


def _npy_header(stream, member: str) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"{member} uses .npy format version {version[0]}.{version[1]}, not 1.0 or 2.0")


def _npz_column(archive: zipfile.ZipFile, key: str, source: str, layout: str) -> _Column:
    member = f"{key}.npy"
    with archive.open(member) as stream:
        shape, fortran, dtype = _npy_header(stream, member)
    if dtype.hasobject:
        raise UserError(f"wrong npz layout: {key} holds Python objects (pickled data), not numbers", source,
                        f"provide {layout}, saved from numeric numpy arrays")
    row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))

    def open_rows():
        stream = archive.open(member)
        _npy_header(stream, member)
        if fortran and len(shape) > 1:  # column-major rows are not contiguous: this one array is read whole
            whole = np.lib.format.read_array(archive.open(member), allow_pickle=False)
            return _memory_column(key, whole)._open_rows()

        def read(n: int) -> np.ndarray:
            raw = stream.read(n * row_bytes)
            whole_rows = len(raw) // row_bytes if row_bytes else n
            return np.frombuffer(raw, dtype=dtype, count=whole_rows * row_bytes // dtype.itemsize).reshape(
                (whole_rows, *shape[1:]))

        return read

    return _Column(key, shape, dtype, open_rows)


def _what_it_is(head: bytes) -> str:
    """A plain description of a file that is not a zip archive, from its first bytes."""
    text = head.lstrip().lower()
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array (np.save), not an .npz archive of the four arrays"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive cut short or damaged (an interrupted download?), not a readable .npz"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed, not an .npz archive (decompress it first)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle, not an .npz archive"
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return "an HTML or XML page (an error page saved in place of the dataset?), not an .npz archive"
    if not head:
        return "an empty file, not an .npz archive"
    return "not an .npz archive (not a zip file)"


class Source:
    """The four arrays of a dataset source (x_train, y_train, x_test, y_test), checked, read a block at a time.

    Use as a context manager; `columns[key]` streams one array. Shapes are checked on opening (from the .npy
    headers: no data read), values by `fingerprint()`, which reads every array once."""

    def __init__(self, name: str, columns: dict[str, _Column], closers=()):
        self.name, self.columns, self._closers = name, columns, list(closers)

    def count(self, split: str) -> int:
        return self.columns[f"x_{split}"].count

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()

    def check_shapes(self, layout: str) -> None:
        source = self.name
        for split in SPLITS:
            x, y = self.columns[f"x_{split}"], self.columns[f"y_{split}"]
            xs = x.shape[:-1] if len(x.shape) == 4 and x.shape[-1] == 1 else x.shape
            ys = y.shape[:-1] if len(y.shape) == 2 and y.shape[-1] == 1 else y.shape
            if x.count == 0 or y.count == 0:
                raise UserError(f"empty dataset: the {split} split has no images", source,
                                "provide a dataset with images in both x_train and x_test")
            if len(xs) != 3 or xs[1:] != (28, 28):
                raise UserError(f"wrong npz layout: x_{split} has shape {list(x.shape)}, not [N,28,28]", source,
                                f"provide {layout}")
            if len(ys) != 1 or ys[0] != x.count:
                raise UserError(f"wrong npz layout: y_{split} has shape {list(y.shape)} for {x.count} images",
                                source, f"provide {layout}")
            for column, what in ((x, "integers 0..255"), (y, f"labels 0..{NUM_CLASSES - 1}")):
                if not np.issubdtype(column.dtype, np.integer):
                    raise UserError(f"wrong npz layout: {column.key} must be {what} (is {column.dtype})", source,
                                    f"provide {layout}")

    def fingerprint(self, layout: str = "mnist.npz layout") -> str:
        """sha256 of the normalized arrays (as `fingerprint` computes it), checking every value on the way."""
        h = hashlib.sha256()
        for key in _KEYS:
            column = self.columns[key]
            high = 255 if key.startswith("x_") else NUM_CLASSES - 1
            h.update(f"{key}:{column.out_dtype.str}:{column.out_shape};".encode())
            read = column._open_rows()
            for n in _block_sizes(column.count):
                rows = read(n)
                if len(rows) != n:
                    raise EOFError(f"{key} ends after fewer rows than its header says")
                if rows.size and (rows.min() < 0 or rows.max() > high):
                    what = "integers 0..255" if key.startswith("x_") else f"labels 0..{high}"
                    raise UserError(f"wrong npz layout: {key} must be {what}", self.name, f"provide {layout}")
                h.update(np.ascontiguousarray(rows.astype(column.out_dtype, copy=False)).tobytes())
        return h.hexdigest()


_LAYOUT = "an .npz with x_train [N,28,28], y_train [N], x_test [M,28,28], y_test [M] (mnist.npz layout)"


def open_source(source: str) -> Source:
    """The source's arrays, opened for streaming: 'digits', an http(s) URL (downloaded to a temporary file) or a
    path / file:// URL of an `.npz`. Anything else that is readable (an `.npy`, a pickle, a gzip, an HTML page)
    is a UserError that says what the file is."""
    if source == "digits":
        return Source(source, {k: _memory_column(k, v) for k, v in digits_arrays().items()})
    if source.startswith(("http://", "https://")):
        tmp = tempfile.TemporaryDirectory(prefix="prepare-data-source-")
        try:
            path = Path(tmp.name) / "source.npz"
            _download(source, path)
            opened = _open_npz(path, source)
        except BaseException:
            tmp.cleanup()
            raise
        opened._closers.insert(0, tmp.cleanup)
        return opened
    path = Path(source[len("file://"):] if source.startswith("file://") else source)
    if not path.is_file():
        raise UserError("dataset source not found", source,
                        "pass an existing .npz path, an https:// URL, or --source digits")
    return _open_npz(path, source)


def _open_npz(path: Path, source: str) -> Source:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if not zipfile.is_zipfile(path):
            raise UserError(f"the dataset source is {_what_it_is(head)}", source,
                            f"provide {_LAYOUT}, e.g. written by np.savez(path, x_train=..., y_train=..., "
                            "x_test=..., y_test=...)")
        archive = zipfile.ZipFile(path)
    except UserError:
        raise
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError("cannot read the dataset as .npz", source, f"provide {_LAYOUT} ({_short(e)})") from e
    try:
        names = [n[:-len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        missing = [k for k in _KEYS if k not in names]
        if missing:
            has = ", ".join(names) or "no .npy arrays"
            raise UserError(f"wrong npz layout: missing {', '.join(missing)} (has {has})", source,
                            f"provide {_LAYOUT}")
        opened = Source(source, {k: _npz_column(archive, k, source, _LAYOUT) for k in _KEYS}, [archive.close])
        opened.check_shapes(_LAYOUT)
        return opened
    except UserError:
        archive.close()
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        archive.close()
        raise UserError("cannot read the dataset as .npz", source, f"provide {_LAYOUT} ({_short(e)})") from e


def _short(e: Exception) -> str:
    """An exception's text for a one-line error, never one that suggests unsafe loading options."""
    text = " ".join(str(e).split())[:200] or type(e).__name__
    return type(e).__name__ if "pickle" in text.lower() else text


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of four in-memory arrays, the same value `Source.fingerprint` gives for them."""
    return Source("arrays", {k: _memory_column(k, arrays[k]) for k in _KEYS}).fingerprint()


# --- writing ------------------------------------------------------------------------------------------------


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def _write_tfrecord(path: Path, rows) -> None:
    """One TFRecord file from (x uint8 [n,28,28], y int64 [n]) blocks."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for x, y in rows:
            for image, label in zip(x, y, strict=True):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }))
                writer.write(example.SerializeToString())


def _write_npz(path: Path, columns: dict[str, _Column]) -> None:
    """An uncompressed `.npz` (as np.savez writes) of the given columns, streamed a block at a time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, column in columns.items():
            header = np.lib.format.header_data_from_array_1_0(np.empty((0,), column.out_dtype))
            header["shape"] = column.out_shape
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                for rows in column.blocks(_block_sizes(column.count)):
                    out.write(np.ascontiguousarray(rows).tobytes())


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
    with open_source(source) as opened:
        return _prepare_from(opened, source, store, shards)


def _prepare_from(opened: Source, source: str, store: Store, shards: int) -> tuple[dict, bool]:
    """Streams the source twice (fingerprint and checks, then the shards): memory stays flat in its size."""
    try:
        fp = opened.fingerprint(_LAYOUT)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated or corrupt data
        raise UserError("cannot read the dataset as .npz", source, f"provide {_LAYOUT} ({_short(e)})") from e
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
            count = opened.count(split)
            n = max(1, min(shards, count))
            sizes = [count // n + (1 if i < count % n else 0) for i in range(n)]  # as np.array_split divides
            xs = opened.columns[f"x_{split}"].blocks(b for size in sizes for b in _block_sizes(size))
            ys = opened.columns[f"y_{split}"].blocks(b for size in sizes for b in _block_sizes(size))
            entries = []
            for i, size in enumerate(sizes):
                name = shard_name(split, i, n)
                blocks = ((next(xs), next(ys)) for _ in _block_sizes(size))
                _write_tfrecord(tmp / name, blocks)
                entries.append({"name": name, "count": size, "size": (tmp / name).stat().st_size,
                                "sha256": sha256_file(tmp / name)})
                jobs.append(name)
            manifest["splits"][split] = {"count": count, "shards": entries}
        _write_npz(tmp / TEST_ARRAYS, {"x": opened.columns["x_test"], "y": opened.columns["y_test"]})
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


FETCH_AHEAD = 2  # shards downloading at once: the next one arrives while tf.data reads the current one


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

    return fetch


def local_shards(store: Store, entries: list[dict], cache_dir=None) -> list[Path]:
    """Local, verified files for the given shard entries, all at once (in parallel)."""
    return parallel_map(_fetcher(store, cache_dir), entries) if entries else []


_failures: list[UserError] = []  # shards that failed their check inside a tf.data iteration, newest last
_failures_lock = threading.Lock()


class ShardFeed:
    """Verified local paths of `entries`, in order, as each becomes ready: `ahead` shards download at once, in
    order, from the moment the feed is made. `paths()` blocks until the next shard has been fetched and checked
    (then re-yields them instantly on later epochs); a shard that fails raises its `UserError` there."""

    def __init__(self, store: Store, entries: list[dict], cache_dir=None, ahead: int = FETCH_AHEAD):
        fetch = _fetcher(store, cache_dir)
        pool = ThreadPoolExecutor(max(1, min(ahead, len(entries))), thread_name_prefix="shard-fetch")
        self._futures = [pool.submit(fetch, entry) for entry in entries]  # run first in, first out
        pool.shutdown(wait=False)  # its threads end once every shard is fetched

    def path(self, index: int) -> Path:
        return self._futures[index].result()

    def paths(self):
        for index in range(len(self._futures)):
            try:
                yield str(self.path(index)).encode()
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

    def files():
        yield from zip(feed.paths(), first, end, strict=False)

    spec = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64))
    return _examples(tf.data.Dataset.from_generator(files, output_signature=spec))


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
