"""Atomic directory publish on a store that has no rename (S3), and reading back only complete directories.

A directory (a model version, a checkpoint) is published by uploading every file, then writing `_COMPLETE`
last: JSON with each file's relative path, size and sha256. A directory without `_COMPLETE` does not exist
for readers. Readers download into a hidden temporary sibling, check sizes and hashes, then rename into place,
so a local copy is either whole or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common.errors import UserError
from trainer import scratch
from trainer.store import Store
from trainer.storeerrors import NotFound, StoreError

COMPLETE = "_COMPLETE"
CLAIM = "_CLAIM"  # `<version>/_CLAIM`: who took the number (claim_version)
FORMAT = 1
VERSION_NAME = re.compile(r"^(0|[1-9][0-9]*)$")
# Hidden temporary folders fetch_dir makes next to a destination; left behind only if the process dies.
LEFTOVER_NAME = re.compile(r"^\.(0|[1-9][0-9]*)\.(partial|old)-[0-9a-f]{8}$")
_THREADS = 8


class Corrupt(StoreError):
    """A published folder whose files do not match its `_COMPLETE` (a flipped byte, a missing file, an unsafe
    path): fetching it again gives the same result, so a reader with an alternative (an older checkpoint)
    takes that instead."""


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def matches(path, size: int, sha256: str, digest: str | None = None) -> bool:
    """True when the file at `path` has `size` bytes and the sha256 `sha256` (`digest`: its sha256 when
    already known, else the file is hashed)."""
    return Path(path).stat().st_size == int(size) and (digest or sha256_file(path)) == sha256


def get_checked(store: Store, key: str, path, size: int, sha256: str) -> bool:
    """Downloads `key` to `path` and says whether it `matches` the expected size and sha256. The check made
    here is why the store may skip its own weaker one (`Store.get_file(checked=True)`). Raises NotFound, or
    DiskFull (naming the folder and `size`) with the partial file removed."""
    try:
        return matches(path, size, sha256, store.get_file(key, path, checked=True))
    except OSError as e:
        full = scratch.disk_full(e, needed=size)
        if full is None:
            raise
        Path(path).unlink(missing_ok=True)
        raise full from e


def _local_files(local_dir: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(local_dir):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(local_dir).as_posix()
            if rel != COMPLETE:
                out.append(rel)
    return out


def parallel_map(fn, items) -> list:
    """Runs fn over items on a few threads (S3 requests wait on the network, not the CPU)."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def publish_dir(local_dir, store: Store, sign=None) -> dict:
    """Uploads every file of `local_dir` below `store`, then `_COMPLETE`; returns the `_COMPLETE` manifest.

    Publishing over an existing complete directory first removes its `_COMPLETE`, so readers never mix files
    of two publishes. `sign(manifest_bytes) -> {key: bytes}`: objects written just before `_COMPLETE` (a
    signature of its exact bytes), so the folder is signed from the moment it is complete.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise UserError("nothing to publish: not a folder", local_dir, "pass the folder that holds the files")
    names = _local_files(local_dir)
    if not names:
        raise UserError("nothing to publish: the folder is empty", local_dir, "write the files first")
    files = [
        {"path": n, "size": (local_dir / n).stat().st_size, "sha256": sha256_file(local_dir / n)}
        for n in names
    ]
    store.delete([COMPLETE])  # deleting a missing key is fine on both stores
    parallel_map(lambda n: store.put_file(n, local_dir / n), names)
    manifest = {"format": FORMAT, "files": files, "bytes": sum(f["size"] for f in files)}
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    for key, data in (sign(raw) if sign else {}).items():
        store.put_bytes(key, data)
    store.put_bytes(COMPLETE, raw)
    return manifest


def read_complete(store: Store) -> dict:
    """The `_COMPLETE` manifest of a published directory; NotFound when it is not (yet) complete."""
    try:
        raw = store.get_bytes(COMPLETE)
    except NotFound as e:
        raise NotFound(
            "not a complete published folder (no _COMPLETE)",
            store.url,
            "publish it again, or pick a complete version",
        ) from e
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        for f in files:
            _ = (str(f["path"]), int(f["size"]), str(f["sha256"]))
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError("unreadable _COMPLETE manifest", store.url_of(COMPLETE), "publish it again") from e
    return manifest


def marked_versions(store: Store, marker: str) -> list[int]:
    """Integer-named children of `store` that hold the object `marker` (`_COMPLETE`, `_REJECTED`), ascending,
    from one listing."""
    versions = set()
    for key in store.list():
        head, _, rest = key.partition("/")
        if rest == marker and VERSION_NAME.match(head):
            versions.add(int(head))
    return sorted(versions)


def complete_versions(store: Store) -> list[int]:
    """Integer-named children of `store` that have `_COMPLETE`, ascending."""
    return marked_versions(store, COMPLETE)


def next_version(store: Store) -> int:
    """1 + the highest integer-named child, complete or not (an interrupted upload's number is not reused)."""
    seen = [int(head) for head in {k.partition("/")[0] for k in store.list()} if VERSION_NAME.match(head)]
    return max(seen, default=0) + 1


def claim_version(store: Store, owner: str = "", attempts: int = 1000) -> int:
    """Takes the next free version number for this publisher alone: from `next_version`, writes
    `<N>/_CLAIM` only if absent (`Store.create`: S3's `If-None-Match: *`), and on conflict tries N+1.
    Two publishers that list at the same moment (the stack's TFJob and an `argo submit` retrain) thus get two
    numbers instead of overwriting each other's files. The claim is read back, which also catches a later
    writer on a server that ignores the condition; there, two claims that land within one round trip can
    still share a number (docs/design.md, "Atomic publish")."""
    token = json.dumps({"owner": owner, "claim": uuid.uuid4().hex}, sort_keys=True).encode()
    version = next_version(store)
    for _ in range(attempts):
        key = f"{version}/{CLAIM}"
        if store.create(key, token) and store.get_bytes(key) == token:
            return version
        version += 1
    raise StoreError(
        f"no free model version after {attempts} tries",
        store.url,
        "check that the store honours If-None-Match, and remove stale folders",
    )


def fetch_dir(store: Store, dest) -> Path:
    """Downloads the complete directory at `store` to `dest`: into a hidden temp sibling, every file checked
    against `_COMPLETE` (size and sha256), then renamed into place. Never leaves a partial `dest`."""
    dest = Path(dest)
    manifest = read_complete(store)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"

    def get(entry: dict) -> None:
        rel = entry["path"]
        target = tmp / rel
        if tmp.resolve() not in target.resolve().parents:
            raise Corrupt("unsafe path in _COMPLETE", store.url_of(rel), "publish the folder again")
        try:
            ok = get_checked(store, rel, target, entry["size"], entry["sha256"])
        except NotFound as e:
            raise Corrupt("a file listed in _COMPLETE is missing", store.url_of(rel),
                          "the published folder is corrupt: publish it again") from e
        if not ok:
            raise Corrupt(
                "file does not match its checksum in _COMPLETE",
                store.url_of(rel),
                "the published folder is corrupt: publish it again",
            )

    try:
        tmp.mkdir()
        parallel_map(get, manifest["files"])
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
