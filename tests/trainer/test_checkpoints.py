"""Resume skips a damaged checkpoint: the newest one whose files verify is restored, the skipped one is named
in one line. On a local folder with a stand-in for tf.train.Checkpoint (the real one runs in the drills)."""

from __future__ import annotations

from tests.helpers.versions import make_dir
from trainer.checkpoints import Checkpoints
from trainer.publish import publish_dir
from trainer.store import open_store


class FakeCheckpoint:
    def __init__(self):
        self.read_from = []

    def read(self, path):
        self.read_from.append(path)
        return self

    def assert_existing_objects_matched(self):
        return None


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    run = open_store(f"file://{tmp_path}/run", "RUN_URL")
    ckpts = Checkpoints(run, is_chief=True)
    for step in (22, 44, 66):
        publish_dir(make_dir(tmp_path / f"ckpt{step}", seed=step), ckpts.store.child(str(step)))
    data = ckpts.store.local_path("66/variables/variables.data-00000")
    damaged = bytearray(data.read_bytes())
    damaged[7] ^= 0xFF  # one flipped byte; its _COMPLETE is intact
    data.write_bytes(bytes(damaged))
    said, checkpoint = [], FakeCheckpoint()
    assert ckpts.restore_newest(checkpoint, said.append) == 44
    assert len(checkpoint.read_from) == 1
    assert said == [f"skipped checkpoint step 66 ({ckpts.store.url_of('66')}): file does not match its checksum "
                    f"in _COMPLETE ({ckpts.store.url_of('66/variables/variables.data-00000')})"]


def test_no_checkpoint_that_verifies_means_start_over(tmp_path):
    run = open_store(f"file://{tmp_path}/run", "RUN_URL")
    ckpts = Checkpoints(run, is_chief=True)
    publish_dir(make_dir(tmp_path / "ckpt22"), ckpts.store.child("22"))
    ckpts.store.local_path("22/saved_model.pb").unlink()
    said = []
    assert ckpts.restore_newest(FakeCheckpoint(), said.append) is None
    assert len(said) == 1 and "a file listed in _COMPLETE is missing" in said[0]
    assert Checkpoints(open_store(f"file://{tmp_path}/empty", "RUN_URL"), True).restore_newest(FakeCheckpoint()) \
        is None
