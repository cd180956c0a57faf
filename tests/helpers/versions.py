"""Model versions for the publish, claim, sync, signing and versions tests: a SavedModel-shaped folder with
made-up bytes, and a folder's files read back for comparison."""

from __future__ import annotations

import os
from pathlib import Path


def make_dir(path: Path, seed: int = 0, files: int = 3) -> Path:
    """A SavedModel-shaped folder at `path` (created): `saved_model.pb` (random bytes, so no two are alike) and
    `files - 1` variable shards filled from `seed`."""
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(os.urandom(1000 + seed))
    (path / "variables").mkdir()
    for i in range(files - 1):
        (path / "variables" / f"variables.data-{i:05d}").write_bytes(bytes([seed]) * (500 + i))
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`: its path relative to `root` (POSIX) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def same_tree(a: Path, b: Path) -> bool:
    return tree(a) == tree(b)
