"""TensorBoard scalars: written locally by `tf.summary` (TF 2.21 cannot write `s3://`) and mirrored to
`RUN_URL/logs/<task>/` by a background thread every `interval` seconds; `close()` flushes and uploads one last
time. The writer rolls to a new event file once the active one holds `roll_bytes` or is `roll_secs` old, so
each round re-uploads only the small active file. Each attempt's first file starts with a `SessionLog.START`
event at the first step it trains, so TensorBoard drops a dead attempt's points after a resume. Why both, and
what TensorBoard does with them: docs/trainer.md, "TensorBoard summaries".
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from trainer.store import Store

ROLL_BYTES = 1 << 20  # a new event file once the active one holds 1 MiB ...
ROLL_SECS = 60.0  # ... or is a minute old
# Wall-clock seconds between rolls: an event file's name carries its creation time in whole seconds, and
# TensorBoard reads a folder's files in name order.
MIN_ROLL_GAP = 1.1


class LogSync:
    """Uploads changed files of `local_dir` to `store` every `interval` s on a daemon thread.

    `retire(path)`: `path` will not change any more; after its next upload it is deleted locally (and never
    uploaded again). `uploaded_bytes` counts every byte sent."""

    def __init__(self, local_dir, store: Store, interval: float = 5.0, before=None):
        self.local_dir = Path(local_dir)
        self.before = before  # called first in each background round (the summary writer's flush)
        self.store = store
        self.interval = interval
        self.uploads = 0
        self.uploaded_bytes = 0
        self._sent: dict[str, int] = {}
        self._retired: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="summary-sync", daemon=True)
        self._warned = False

    def start(self) -> LogSync:
        self._thread.start()
        return self

    def retire(self, path) -> None:
        with self._lock:
            self._retired.add(Path(path))

    def sync(self) -> int:
        """Uploads every file whose size changed since its last upload; returns how many went up."""
        with self._lock:
            sent = 0
            for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file()):
                key = path.relative_to(self.local_dir).as_posix()
                if self._sent.get(key) != path.stat().st_size:
                    data = path.read_bytes()  # a snapshot: TF may append while we upload
                    self.store.put_bytes(key, data)
                    self._sent[key] = len(data)
                    self.uploaded_bytes += len(data)
                    sent += 1
                if path in self._retired:  # closed before this round: what went up is final
                    path.unlink()
                    self._retired.discard(path)
            self.uploads += sent
            return sent

    def round(self) -> int:
        """One background round: `before()`, then `sync()`."""
        if self.before is not None:
            self.before()
        return self.sync()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.round()
            except Exception as e:  # S3 down for a while: training goes on, the next round catches up
                if not self._warned:
                    print(f"warning: cannot upload summaries to {self.store.url} ({e}); retrying",
                          file=sys.stderr, flush=True)
                    self._warned = True

    def stop(self) -> None:
        """Stops the thread (after its current round)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 60)

    def close(self) -> None:
        """Stops the thread and uploads whatever is left (errors surface here)."""
        self.stop()
        self.sync()


class Summaries:
    """Scalars for one task: `tf.summary` into a temporary folder, mirrored to `store` by a `LogSync`.

    `roll_bytes`, `roll_secs`: when to start a new event file (see the module's doc). `clock` (seconds),
    `background=False` (no thread: the caller runs `sync.round()`) and `min_roll_gap=0` let the benchmark
    simulate hours in seconds (its file names then need not sort in order: it reads no TensorBoard)."""

    def __init__(self, store: Store, interval: float = 5.0, start_step: int = 0, roll_bytes: int = ROLL_BYTES,
                 roll_secs: float = ROLL_SECS, clock=time.monotonic, background: bool = True,
                 min_roll_gap: float = MIN_ROLL_GAP):
        import tensorflow as tf

        self._tf = tf
        self.local_dir = Path(tempfile.mkdtemp(prefix="trainer-logs-"))
        self.store = store
        self.roll_bytes, self.roll_secs, self._clock, self._min_gap = roll_bytes, roll_secs, clock, min_roll_gap
        self._flush_millis = max(100, int(interval * 500))
        self._lock = threading.Lock()  # the writer is swapped on a roll while the training loop writes
        self.rolls = 0
        self._open_writer()
        self._mark_start(start_step + 1)  # in the attempt's first file only: a roll is no restart
        # The sync thread flushes the writer (and rolls it when due) before each upload.
        self.sync = LogSync(self.local_dir, store, interval, before=self._flush_and_roll)
        if background:
            self.sync.start()

    def _open_writer(self) -> None:
        before = set(self.local_dir.iterdir())
        self.writer = self._tf.summary.create_file_writer(str(self.local_dir), flush_millis=self._flush_millis)
        self.writer.flush()  # creates the file now
        new = sorted(set(self.local_dir.iterdir()) - before)
        self._active = new[-1] if new else None
        self._opened, self._opened_wall = self._clock(), time.time()

    def _mark_start(self, step: int) -> None:
        """SessionLog.START at `step`: a restart there, for TensorBoard, if this run wrote a START before."""
        from tensorboard.compat.proto import event_pb2
        from tensorflow.python.ops import summary_ops_v2

        event = event_pb2.Event(step=step, wall_time=time.time(),
                                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
        with self.writer.as_default():
            summary_ops_v2.import_event(self._tf.constant(event.SerializeToString()))

    def _flush_and_roll(self) -> None:
        with self._lock:
            self.writer.flush()
            if self._active is None:
                return
            age = self._clock() - self._opened
            size = self._active.stat().st_size if self._active.exists() else 0
            spaced = time.time() - self._opened_wall >= self._min_gap
            if (size >= self.roll_bytes or age >= self.roll_secs) and spaced:
                self.writer.close()
                self.sync.retire(self._active)
                self._open_writer()
                self.rolls += 1

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self._lock, self.writer.as_default(step=step):
            for name, value in values.items():
                if value is not None:
                    self._tf.summary.scalar(name, value)

    def flush(self) -> None:
        with self._lock:
            self.writer.flush()

    def close(self, quiet: bool = False) -> None:
        """Flushes, uploads the rest, and removes the local folder. `quiet`: on the way out after another
        error, a failed upload must not hide that error."""
        try:
            self.sync.stop()  # no flush from the thread once the writer is closed
            with self._lock:
                self.writer.flush()
                self.writer.close()
            self.sync.close()
        except Exception as e:
            if not quiet:
                raise
            print(f"warning: last upload of summaries to {self.store.url} failed ({e})", file=sys.stderr)
        finally:
            shutil.rmtree(self.local_dir, ignore_errors=True)
