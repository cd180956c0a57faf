"""Storage URLs and one small API over S3 (`s3://bucket/prefix`) or a local folder (`file:///abs/path`).

Every command reads and writes through a `Store`, so the same code runs against AWS, any S3-compatible server
and a mounted volume. Keys are relative, `/`-separated paths below the store's URL. S3 itself is reached only
through `trainer.s3` (imported on first use, so a `file:///` store needs no boto3).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from common.errors import UserError
from trainer.storeerrors import NotFound, StoreError

# AWS bucket naming rules: 3-63 chars, lower case letters, digits, dots and hyphens, no "..", not an IP.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# Temporary files a local store writes next to their final name; hidden from list().
_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{8}\.partial$")


def open_store(url: str, var: str = "URL") -> Store:
    """The store for `url`; anything but s3://bucket/prefix or file:///absolute/path is a UserError."""
    fix = (
        f"set {var} to s3://<bucket>/<prefix> (for example s3://my-bucket/data/mnist) "
        "or file:///<absolute path>"
    )
    if not isinstance(url, str) or not url.strip():
        raise UserError(f"{var} is empty", repr(url), fix)
    url = url.strip()
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket):
            raise UserError(
                f"{var} names an invalid S3 bucket {bucket!r}",
                url,
                "bucket names are 3-63 lower-case letters, digits, dots or hyphens; " + fix,
            )
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts) or "//" in prefix.rstrip("/"):
            raise UserError(f"{var} has an invalid prefix", url, fix)
        return S3Store(bucket, "/".join(parts))
    if url.startswith("file://"):
        path = url[len("file://"):]
        if not path.startswith("/"):
            raise UserError(f"{var} must be an absolute file:/// URL (three slashes)", url, fix)
        if any(p == ".." for p in path.split("/")):
            raise UserError(f"{var} must not contain '..'", url, fix)
        return LocalStore(Path(os.path.normpath(path)))
    raise UserError(f"{var} is not an s3:// or file:/// URL", url, fix)


def _check_key(key: str, allow_empty: bool = False) -> str:
    if not isinstance(key, str):
        raise TypeError(f"store key must be a str, not {type(key).__name__}")
    if not key and allow_empty:
        return key
    parts = key.split("/")
    bad_part = any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", "..")
    if not key or key.startswith("/") or bad_part:
        raise ValueError(f"invalid store key {key!r}: use a relative path such as 'a/b.txt'")
    return key


class Store:
    """Common API; `S3Store` and `LocalStore` implement it."""

    url: str

    def child(self, *parts: str) -> Store:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        """Writes `key` only if nothing is there, atomically; False when something already is."""
        raise NotImplementedError

    def put_file(self, key: str, path) -> None:
        raise NotImplementedError

    def get_file(self, key: str, path, checked: bool = False) -> str | None:
        """Writes the object to `path` (via a temp file and rename). May return the sha256 of the bytes
        written, computed on the way (S3); None when it did not (then hash the file if you need it).
        `checked=True` promises that the caller compares that sha256 with one it knows, so the store may
        skip a weaker check of its own (S3: botocore's CRC32 of the response)."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> dict[str, int]:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, keys) -> None:
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def url_of(self, key: str = "") -> str:
        """The full URL of `key` below this store (for messages)."""
        return f"{self.url}/{key}" if key else self.url

    def local_path(self, key: str) -> Path | None:
        """The file behind `key` when the store is a local folder, else None (lets readers skip a copy)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Store) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _s3():
    """`trainer.s3`, imported on first use: boto3 loads only for an s3:// store."""
    from trainer import s3

    return s3


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str = ""):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return _join(self.prefix, _check_key(key))

    def child(self, *parts: str) -> S3Store:
        return S3Store(self.bucket, _join(self.prefix, *(_check_key(p) for p in parts)))

    def put_bytes(self, key: str, data: bytes) -> None:
        _s3().put_bytes(self.bucket, self._key(key), data)

    def get_bytes(self, key: str) -> bytes:
        return _s3().get_bytes(self.bucket, self._key(key))

    def create(self, key: str, data: bytes) -> bool:
        return _s3().create_bytes(self.bucket, self._key(key), data)

    def put_file(self, key: str, path) -> None:
        _s3().put_file(self.bucket, self._key(key), Path(path))

    def get_file(self, key: str, path, checked: bool = False) -> str | None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            digest = _s3().get_file(self.bucket, self._key(key), tmp, checked)
            os.replace(tmp, path)
            return digest
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> dict[str, int]:
        base = self.prefix + "/" if self.prefix else ""
        return _s3().list_sizes(self.bucket, base, prefix)

    def exists(self, key: str) -> bool:
        return _s3().exists(self.bucket, self._key(key))

    def delete(self, keys) -> None:
        full = [self._key(k) for k in keys]
        if full:
            _s3().delete(self.bucket, full)

    def check(self) -> None:
        _s3().check_bucket(self.bucket, f"{self.prefix}/" if self.prefix else "")


class LocalStore(Store):
    """A folder on a local or mounted filesystem. Writes go to a hidden temp file, then rename."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = "file://" + self.root.as_posix()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def child(self, *parts: str) -> LocalStore:
        return LocalStore(self.root.joinpath(*(_check_key(p) for p in parts)))

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def _staged(self, key: str) -> tuple[Path, Path]:
        """The key's path, with its folder made, and a unique temp name beside it."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError("cannot create the folder", path.parent, f"check permissions ({e})") from e
        return path, path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")

    def _write(self, key: str, fill) -> None:
        path, tmp = self._staged(key)
        try:
            fill(tmp)
            os.replace(tmp, path)
        except OSError as e:
            raise StoreError("cannot write", self.url_of(key), f"check space and permissions ({e})") from e
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda tmp: tmp.write_bytes(data))

    def create(self, key: str, data: bytes) -> bool:
        """A hard link of a finished temp file: fails if the name exists, so readers see all or nothing."""
        path, tmp = self._staged(key)
        try:
            tmp.write_bytes(data)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise StoreError("cannot write", self.url_of(key), f"check space and permissions ({e})") from e
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, path) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFound("not found", self.url_of(key), "check the URL, or write it first") from e

    def get_file(self, key: str, path, checked: bool = False) -> str | None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound("not found", self.url_of(key), "check the URL, or write it first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)
            return None
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.root.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if _PARTIAL.match(name):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    try:
                        out[key] = (Path(dirpath) / name).stat().st_size
                    except FileNotFoundError:  # deleted while we walked
                        pass
        return dict(sorted(out.items()))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, keys) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Drop folders the delete left empty, up to the store's root.
            parent = path.parent
            while parent != self.root and self.root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError("cannot create the folder", self.url, f"check path and permissions ({e})") from e
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StoreError("cannot read the folder", self.url, "check its permissions")
