"""One training per run: the chief's lease on RUN_URL. On the S3 server (which honours If-None-Match), on a
local folder, and on a store that ignores the condition, with a clock the test moves (no waiting)."""

from __future__ import annotations

import json
import sys

import pytest

from trainer import lease as lease_mod
from trainer.lease import Lease, LeaseHeld
from trainer.store import LocalStore, open_store


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["s3", "file"])
def run(request, tmp_path):
    if request.param == "s3":
        return open_store(f"s3://{request.getfixturevalue('bucket')}/runs/r1", "RUN_URL")
    return open_store(f"file://{tmp_path}/runs/r1", "RUN_URL")


def test_a_second_training_is_refused_naming_the_holder(run):
    clock = Clock()
    first = Lease(run, "tfjob_name:mnist-a", ttl=120, clock=clock).acquire()
    assert first.generation == 1 and not first.resumed
    with pytest.raises(LeaseHeld) as e:
        Lease(run, "tfjob_name:mnist-b", clock=clock).acquire()
    text = str(e.value)
    assert "tfjob_name:mnist-a" in text and "expires at 2027-01-15T08:02:00Z" in text
    assert run.url_of("_LEASE/1") in text


def test_a_restart_of_the_same_job_resumes_under_its_lease(run):
    clock = Clock()
    Lease(run, "tfjob_name:mnist-a", clock=clock).acquire()
    clock.now += 60
    again = Lease(run, "tfjob_name:mnist-a", ttl=120, clock=clock).acquire()
    assert again.generation == 1 and again.resumed
    assert json.loads(run.get_bytes("_LEASE/1"))["expires"] == clock.now + 120  # renewed


def test_an_expired_lease_is_taken_over_and_its_holder_learns_it(run):
    clock = Clock()
    old = Lease(run, "tfjob_name:mnist-a", ttl=120, clock=clock).acquire()
    clock.now += 121
    new = Lease(run, "tfjob_name:mnist-b", clock=clock).acquire()
    assert new.generation == 2 and sorted(run.child("_LEASE").list()) == ["2"]
    with pytest.raises(lease_mod.UserError, match="lost the run's lease"):
        old.check()
    old.renew()
    assert old.lost and json.loads(run.get_bytes("_LEASE/2"))["holder"] == "tfjob_name:mnist-b"
    new.check()  # still the holder


def test_release_frees_the_run(run):
    clock = Clock()
    Lease(run, "a", clock=clock).acquire().release()
    assert Lease(run, "b", clock=clock).acquire().generation == 2


def test_identity_comes_from_the_environment():
    assert lease_mod.identity({"TRAINING_ID": "x", "TFJOB_NAME": "mnist"}) == "training_id:x"
    assert lease_mod.identity({"TFJOB_NAME": "mnist-baseline"}) == "tfjob_name:mnist-baseline"
    assert lease_mod.identity({}).startswith("host:")


class IgnoresIfNoneMatch(LocalStore):
    """A store like an S3 server that ignores If-None-Match: every create writes."""

    def create(self, key, data):
        self.put_bytes(key, data)
        return True

    def child(self, *parts):
        return IgnoresIfNoneMatch(super().child(*parts).root)


def test_a_server_that_ignores_conditional_writes_is_named(tmp_path, capsys):
    run = IgnoresIfNoneMatch(tmp_path / "run")
    held = Lease(run, "a", clock=Clock()).acquire()
    err = capsys.readouterr().err
    assert "the S3 server ignores If-None-Match" in err and run.url in err
    assert held.generation == 1
    with pytest.raises(LeaseHeld):  # a later training still reads the lease and stops
        Lease(run, "b", clock=Clock()).acquire()
    capsys.readouterr()
    honest = open_store(f"file://{tmp_path}/run2", "RUN_URL")
    Lease(honest, "a", clock=Clock()).acquire()
    assert "ignores" not in capsys.readouterr().err


def test_train_stops_before_tensorflow_when_the_run_is_held(prepared, bucket, monkeypatch, capsys):
    """`train` refuses a held run before it imports TensorFlow (here: importing it would fail)."""
    from trainer import cli

    run_url = f"s3://{bucket}/runs/held"
    Lease(open_store(run_url), "tfjob_name:other").acquire()
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setenv("TFJOB_NAME", "mnist-second")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    rc = cli.main(["train", "--data-url", prepared[0].url, "--run-url", run_url,
                   "--model-url", f"s3://{bucket}/models/mnist", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: another training holds this run: tfjob_name:other on ")
