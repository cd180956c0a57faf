"""Checkpoints under `RUN_URL/checkpoints/<step>/`, published atomically (files, then `_COMPLETE`).

Every task writes the checkpoint (MultiWorkerMirroredStrategy wants all of them to take part in a save); the
chief writes into a folder that it then publishes, the others into a temporary folder they delete. Restore
takes the newest complete step that verifies: a step folder without `_COMPLETE` (an upload cut short) is
ignored, and one whose files do not match their checksums is skipped with one line, for the one before it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from trainer import publish
from trainer.store import Store

PREFIX = "ckpt"  # tf.train.Checkpoint file prefix inside a step folder: ckpt.index, ckpt.data-...


class Checkpoints:
    def __init__(self, run_store: Store, is_chief: bool, keep: int = 3):
        self.store = run_store.child("checkpoints")
        self.is_chief = is_chief
        self.keep = keep

    def steps(self) -> list[int]:
        """Complete checkpoint steps, ascending."""
        return publish.complete_versions(self.store)

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def restore(self, checkpoint, step: int) -> None:
        """Downloads step's checkpoint (verified against `_COMPLETE`) and restores `checkpoint` from it."""
        tmp = Path(tempfile.mkdtemp(prefix="trainer-restore-"))
        try:
            local = publish.fetch_dir(self.store.child(str(step)), tmp / "ckpt")
            checkpoint.read(str(local / PREFIX)).assert_existing_objects_matched()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def restore_newest(self, checkpoint, say=print) -> int | None:
        """Restores the newest complete checkpoint whose files verify; returns its step (None: none left,
        train from the start). A damaged one is skipped with one line naming it and why: the run goes on from
        the one before instead of failing on every restart."""
        for step in reversed(self.steps()):
            try:
                self.restore(checkpoint, step)
                return step
            except publish.Corrupt as e:
                say(f"skipped checkpoint step {step} ({self.store.url_of(str(step))}): {e.what} ({e.value})")
        return None

    def save(self, checkpoint, step: int) -> str | None:
        """Every task calls this at the same step. Returns the published URL on the chief, else None."""
        tmp = Path(tempfile.mkdtemp(prefix="trainer-ckpt-"))
        try:
            checkpoint.write(str(tmp / PREFIX))
            if not self.is_chief:
                return None
            target = self.store.child(str(step))
            publish.publish_dir(tmp, target)
            self.prune()
            return target.url
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def prune(self) -> list[int]:
        """Deletes all but the newest `keep` complete checkpoints (their `_COMPLETE` first, so a reader never
        sees a complete-looking folder with files missing). Returns the deleted steps."""
        if self.keep <= 0:
            return []
        old = self.steps()[:-self.keep]
        for step in old:
            folder = self.store.child(str(step))
            folder.delete([publish.COMPLETE])
            folder.delete(list(folder.list()))
        return old
