"""TensorBoard scalars: written locally by `tf.summary`, mirrored to `RUN_URL/logs/<task>/` during training.

TF 2.21 cannot write `s3://` itself, so the event files go to a local folder and a background thread flushes
the writer and uploads every file that changed, every `interval` seconds (S3 objects are immutable: a growing
event file is re-uploaded whole). So S3 is at most about `interval` plus one upload behind the training loop;
`close()` flushes and uploads one last time.

Restarts: every attempt of a run starts its event file with a `SessionLog.START` event at the first step it
trains (`start_step + 1`). TensorBoard treats the first START of a run as its start and every later one as a
restart, and then drops every point it has read at that step or after (`purge_orphaned_data`, on by default;
tensorboard/backend/event_processing/plugin_event_accumulator.py, `_CheckForRestartAndMaybePurge`). So after a
resume from checkpoint step N, the dead attempt's points after N disappear and each step shows once. TF 2.21
has no public call that writes a SessionLog event, so it goes through `summary_ops_v2.import_event`, which
writes a raw `Event` into the same writer (TF's own file, right after its `file_version` event).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from pathlib import Path

from trainer.store import Store


class LogSync:
    """Uploads changed files of `local_dir` to `store` every `interval` s on a daemon thread."""

    def __init__(self, local_dir, store: Store, interval: float = 5.0, before=None):
        self.local_dir = Path(local_dir)
        self.before = before  # called first in each background round (the summary writer's flush)
        self.store = store
        self.interval = interval
        self.uploads = 0
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="summary-sync", daemon=True)
        self._warned = False

    def start(self) -> LogSync:
        self._thread.start()
        return self

    def sync(self) -> int:
        """Uploads every file whose size changed since its last upload; returns how many went up."""
        with self._lock:
            sent = 0
            for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file()):
                key = path.relative_to(self.local_dir).as_posix()
                if self._sent.get(key) == path.stat().st_size:
                    continue
                data = path.read_bytes()  # a snapshot: TF may append while we upload
                self.store.put_bytes(key, data)
                self._sent[key] = len(data)
                sent += 1
            self.uploads += sent
            return sent

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.before is not None:
                    self.before()
                self.sync()
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
    """Scalars for one task: `tf.summary` into a temporary folder, mirrored to `store` by a `LogSync`."""

    def __init__(self, store: Store, interval: float = 5.0, start_step: int = 0):
        import tensorflow as tf

        self._tf = tf
        self.local_dir = Path(tempfile.mkdtemp(prefix="trainer-logs-"))
        self.store = store
        self.writer = tf.summary.create_file_writer(str(self.local_dir), flush_millis=max(100, int(interval * 500)))
        self._mark_start(start_step + 1)
        # The sync thread flushes the writer before each upload (the writer's ops lock internally).
        self.sync = LogSync(self.local_dir, store, interval, before=self.writer.flush).start()

    def _mark_start(self, step: int) -> None:
        """SessionLog.START at `step`: a restart there, for TensorBoard, if this run wrote a START before."""
        import time

        from tensorboard.compat.proto import event_pb2
        from tensorflow.python.ops import summary_ops_v2

        event = event_pb2.Event(step=step, wall_time=time.time(),
                                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
        with self.writer.as_default():
            summary_ops_v2.import_event(self._tf.constant(event.SerializeToString()))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                if value is not None:
                    self._tf.summary.scalar(name, value)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, quiet: bool = False) -> None:
        """Flushes, uploads the rest, and removes the local folder. `quiet`: on the way out after another
        error, a failed upload must not hide that error."""
        try:
            self.sync.stop()  # no flush from the thread once the writer is closed
            self.writer.flush()
            self.writer.close()
            self.sync.close()
        except Exception as e:
            if not quiet:
                raise
            print(f"warning: last upload of summaries to {self.store.url} failed ({e})", file=sys.stderr)
        finally:
            shutil.rmtree(self.local_dir, ignore_errors=True)
