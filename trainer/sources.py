"""Dataset sources for `prepare-data`: the four arrays (x_train, y_train, x_test, y_test) of 'digits', an
http(s) URL or a local `.npz`, checked and streamed a block of rows at a time.

The offline 'digits' ship with this package (`digits.npz`); a URL is downloaded to a temporary file; an `.npz`
is read member by member from its `.npy` headers, so memory does not grow with the dataset. A file that is not
an `.npz` of that layout is a `UserError` that says what the file is.
"""

from __future__ import annotations

import hashlib
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from common.errors import UserError
from trainer.data import NUM_CLASSES, SPLITS

DEFAULT_SOURCE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DIGITS_TEST_COUNT = 360
DIGITS_SEED = 0
DIGITS_FILE = "digits.npz"  # package data: the 8x8 digits and their split (see digits_arrays)
KEYS = ("x_train", "y_train", "x_test", "y_test")


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
        raw = {key: shipped[key] for key in KEYS}
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


class Column:
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


def block_sizes(total: int, block: int = 4096):
    for start in range(0, total, block):
        yield min(block, total - start)


def _memory_column(key: str, array: np.ndarray) -> Column:
    array = np.asarray(array)

    def open_rows():
        position = [0]

        def read(n: int) -> np.ndarray:
            rows = array[position[0]:position[0] + n]
            position[0] += len(rows)
            return rows

        return read

    return Column(key, array.shape, array.dtype, open_rows)


def _npy_header(stream, member: str) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"{member} uses .npy format version {version[0]}.{version[1]}, not 1.0 or 2.0")


def _npz_column(archive: zipfile.ZipFile, key: str, source: str, layout: str) -> Column:
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

    return Column(key, shape, dtype, open_rows)


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

    def __init__(self, name: str, columns: dict[str, Column], closers=()):
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
        for key in KEYS:
            column = self.columns[key]
            high = 255 if key.startswith("x_") else NUM_CLASSES - 1
            h.update(f"{key}:{column.out_dtype.str}:{column.out_shape};".encode())
            read = column._open_rows()
            for n in block_sizes(column.count):
                rows = read(n)
                if len(rows) != n:
                    raise EOFError(f"{key} ends after fewer rows than its header says")
                if rows.size and (rows.min() < 0 or rows.max() > high):
                    what = "integers 0..255" if key.startswith("x_") else f"labels 0..{high}"
                    raise UserError(f"wrong npz layout: {key} must be {what}", self.name, f"provide {layout}")
                h.update(np.ascontiguousarray(rows.astype(column.out_dtype, copy=False)).tobytes())
        return h.hexdigest()


LAYOUT = "an .npz with x_train [N,28,28], y_train [N], x_test [M,28,28], y_test [M] (mnist.npz layout)"


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
                            f"provide {LAYOUT}, e.g. written by np.savez(path, x_train=..., y_train=..., "
                            "x_test=..., y_test=...)")
        archive = zipfile.ZipFile(path)
    except UserError:
        raise
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError("cannot read the dataset as .npz", source, f"provide {LAYOUT} ({short_error(e)})") from e
    try:
        names = [n[:-len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        missing = [k for k in KEYS if k not in names]
        if missing:
            has = ", ".join(names) or "no .npy arrays"
            raise UserError(f"wrong npz layout: missing {', '.join(missing)} (has {has})", source,
                            f"provide {LAYOUT}")
        opened = Source(source, {k: _npz_column(archive, k, source, LAYOUT) for k in KEYS}, [archive.close])
        opened.check_shapes(LAYOUT)
        return opened
    except UserError:
        archive.close()
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        archive.close()
        raise UserError("cannot read the dataset as .npz", source, f"provide {LAYOUT} ({short_error(e)})") from e


def short_error(e: Exception) -> str:
    """An exception's text for a one-line error, never one that suggests unsafe loading options."""
    text = " ".join(str(e).split())[:200] or type(e).__name__
    return type(e).__name__ if "pickle" in text.lower() else text


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of four in-memory arrays, the same value `Source.fingerprint` gives for them."""
    return Source("arrays", {k: _memory_column(k, arrays[k]) for k in KEYS}).fingerprint()

