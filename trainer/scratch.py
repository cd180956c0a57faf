"""The process's scratch folder under TMPDIR, removed on the way out (SIGTERM included) and, when an earlier
attempt was killed outright, at the next start; and "no space left" as one line naming the folder.

Every temporary folder the trainer makes (checkpoint and export staging, the local summaries, prepare-data's
shards) goes inside `$TMPDIR/trainer-scratch-<random>/`: `setup()` points Python's `tempfile` there. The
folder holds a `.lock` that the process keeps `flock`ed while it lives; the kernel drops that lock however the
process ends, so the next `setup()` in the same TMPDIR (a pod restarted in place keeps its emptyDir) removes
every scratch folder whose lock it can take, and never a live process's. The dataset cache
(`$TMPDIR/trainer-data-cache`, or DATA_CACHE_DIR) is kept: its files are checked before use.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from common.errors import UserError

PREFIX = "trainer-scratch-"
LOCK = ".lock"
# What sizes TMPDIR in the stack: every pod mounts an emptyDir named `tmp` at /tmp (infra/podspec.py).
TMP_SETTING = "the pods' `tmp` volume (its emptyDir sizeLimit, TMP_VOLUME in infra/podspec.py)"

_state: dict = {}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` (staging folders, the summaries' last
    upload) runs before the process exits. A BaseException: no `except Exception` swallows it."""


class DiskFull(UserError):
    """A write failed for want of space: names the folder's variable, the folder, and what would help."""

    def __init__(self, var: str, folder: Path, needed: int | None = None):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        facts = ", ".join(p for p in (f"{free} bytes free" if free is not None else "",
                                      f"{needed} bytes needed" if needed else "") if p)
        fix = f"free space there or give it more room: in the stack, {TMP_SETTING}"
        if var == "DATA_CACHE_DIR":
            fix = "point DATA_CACHE_DIR at a larger disk, or " + fix
        super().__init__(f"no space left in {var}", f"{folder}: {facts}" if facts else folder, fix)


def base() -> Path:
    """TMPDIR as this process found it (before `setup()` pointed `tempfile` at the scratch folder)."""
    return Path(_state.get("base") or tempfile.gettempdir())


def sweep(folder: Path) -> list[Path]:
    """Removes the scratch folders under `folder` that no live process holds. Returns them."""
    removed = []
    for path in sorted(folder.glob(PREFIX + "*")):
        if not path.is_dir():
            continue
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except FileNotFoundError:
            # Killed between creating the folder and locking it: a moment's window, so only an old one goes.
            if time.time() - path.stat().st_mtime < 60:
                continue
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its process is alive
        shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            os.close(fd)
        removed.append(path)
    return removed


def setup() -> Path:
    """Sweeps what killed attempts left in TMPDIR, makes this process's scratch folder, points `tempfile` at it
    and turns SIGTERM into `Terminated`. Returns the folder."""
    top = Path(tempfile.gettempdir())
    _state["base"] = str(top)
    _state["swept"] = sweep(top)
    work = Path(tempfile.mkdtemp(prefix=PREFIX, dir=top))
    # The lock is taken before it gets its name: another process's sweep that found `.lock` unlocked in the
    # moment between creating and locking it would remove this live folder.
    fd = os.open(work / (LOCK + ".new"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(work / (LOCK + ".new"), work / LOCK)
    _state.update(work=work, fd=fd)
    tempfile.tempdir = str(work)

    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        _state["previous"] = signal.signal(signal.SIGTERM, terminated)
    return work


def swept() -> list[Path]:
    return list(_state.get("swept", []))


def cleanup() -> None:
    """Removes this process's scratch folder (what is still in it was only ever staging)."""
    work, fd = _state.pop("work", None), _state.pop("fd", None)
    tempfile.tempdir = None
    if "previous" in _state:
        signal.signal(signal.SIGTERM, _state.pop("previous"))
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    if fd is not None:
        os.close(fd)


_PATH = re.compile(r"(/[^\s:;,'\"()]+)")


def disk_full(err: BaseException, needed: int | None = None) -> DiskFull | None:
    """The DiskFull that explains `err` (an OSError ENOSPC, or TensorFlow's "No space left on device",
    anywhere in its chain), or None. The folder is the one of TMPDIR and DATA_CACHE_DIR that holds the path
    the error names, else the fuller of the two."""
    seen, e, path = set(), err, None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFull):
            return e
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            path = e.filename
            break
        if "No space left on device" in str(e):
            found = _PATH.findall(str(e))
            path = found[0] if found else None
            break
        e = e.__cause__ or e.__context__
    else:
        return None
    folders = [("DATA_CACHE_DIR", default_cache_dir()), ("TMPDIR", base())]
    if path:
        for var, folder in folders:
            if Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder)):
                return DiskFull(var, folder, needed)

    def free(folder: Path) -> int:
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            return 1 << 62

    var, folder = min(folders, key=lambda f: free(f[1]))
    return DiskFull(var, folder, needed)


def default_cache_dir() -> Path:
    """The dataset cache's folder: DATA_CACHE_DIR, else TMPDIR as the process found it (not its scratch folder:
    the cache outlives the process)."""
    return Path(os.environ.get("DATA_CACHE_DIR") or base() / "trainer-data-cache")
