"""Summaries roll to a new event file, so each upload round moves only the small active file; every scalar
still reaches the store, in step order across the files, and a finished file leaves the local folder."""

from __future__ import annotations

import pytest

from tests.trainer.test_train import read_logs
from trainer.store import open_store


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return open_store(f"file://{tmp_path}/logs")


def _steps(store) -> list[list[int]]:
    """Steps of the scalar `loss` in each event file on `store`, files in name order."""
    logs = read_logs(store)
    return [[step for step, _ in logs[name].get("loss", [])] for name in sorted(logs)]


def test_rolls_by_age_and_uploads_only_the_active_file(store):
    from trainer.summaries import Summaries

    clock = Clock()
    logs = Summaries(store, interval=5, roll_bytes=1 << 30, roll_secs=60, clock=clock, background=False,
                     min_roll_gap=0)
    per_round = []
    step = 0
    try:
        for _ in range(58):  # 290 simulated seconds, a round every 5 s, four scalars a round
            for _ in range(4):
                step += 1
                logs.scalars(step, {"loss": 1.0 / step})
            clock.now += 5
            before = logs.sync.uploaded_bytes
            logs.sync.round()
            per_round.append(logs.sync.uploaded_bytes - before)
        assert logs.rolls == 4  # at 60, 120, 180 and 240 s: a fifth file is active
        local = sorted(p.name for p in logs.local_dir.iterdir())
        assert len(local) == 1  # finished files were uploaded one last time and removed
    finally:
        logs.close()
    files = _steps(store)
    assert len(files) == 5
    assert [s for f in files for s in f] == list(range(1, step + 1))  # nothing lost, in order across files
    # Flat: a round never sends more than one minute's worth of events, however long the run.
    assert max(per_round[-12:]) <= 2 * max(per_round[:12])


def test_rolls_by_size(store):
    from trainer.summaries import Summaries

    logs = Summaries(store, interval=5, roll_bytes=2000, roll_secs=1e9, background=False, min_roll_gap=0)
    try:
        for step in range(1, 201):
            logs.scalars(step, {"loss": float(step)})
            if step % 20 == 0:
                logs.sync.round()
        assert logs.rolls >= 3
    finally:
        logs.close()
    files = _steps(store)
    assert len(files) == logs.rolls + 1
    assert [s for f in files for s in f] == list(range(1, 201))
    sizes = store.list()
    assert max(sizes.values()) < 2000 + 20 * 100  # at most one round of events past the threshold


def test_a_failed_upload_keeps_the_finished_file_for_the_next_round(store, tmp_path):
    from trainer.summaries import Summaries

    class Flaky:
        """The store, refusing uploads while `down`."""

        def __init__(self, inner):
            self.inner, self.down, self.url = inner, False, inner.url

        def put_bytes(self, key, data):
            if self.down:
                raise OSError("S3 is down")
            self.inner.put_bytes(key, data)

    flaky, clock = Flaky(store), Clock()
    logs = Summaries(flaky, interval=5, roll_secs=10, clock=clock, background=False, min_roll_gap=0)
    try:
        logs.scalars(1, {"loss": 1.0})
        clock.now = 11
        flaky.down = True
        with pytest.raises(OSError):
            logs.sync.round()  # rolled, but the finished file could not go up
        assert logs.rolls == 1 and len(list(logs.local_dir.iterdir())) == 2
        flaky.down = False
        logs.scalars(2, {"loss": 2.0})
        logs.sync.round()
        assert len(list(logs.local_dir.iterdir())) == 1
    finally:
        logs.close()
    assert [s for f in _steps(store) for s in f] == [1, 2]
