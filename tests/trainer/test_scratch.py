"""The trainer's temporary files: a full disk gives one line naming the folder (TMPDIR or DATA_CACHE_DIR), what
was needed and what sizes it in the stack; SIGTERM removes the process's scratch folder; the next start removes
what a killed attempt left and never a live process's. Real `python -m trainer` processes against the real S3
server; a small TMPDIR is a tmpfs of a few hundred KiB mounted in a private mount namespace (`unshare`)."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest

from demo.s3server import boto_kwargs
from tests.conftest import ROOT, trainer_env
from trainer import scratch

FIX = ("free space there or give it more room: in the stack, the pods' `tmp` volume (its emptyDir sizeLimit, "
       "TMP_VOLUME in infra/podspec.py)")
# The lines as docs/operations.md's field situations table gives them (numbers and folders vary).
TMPDIR_FULL = re.compile(r"error: no space left in TMPDIR \((?P<dir>/\S+): (?P<free>\d+) bytes free\): "
                         + re.escape(FIX))
CACHE_FULL = re.compile(r"error: no space left in DATA_CACHE_DIR \((?P<dir>/\S+): (?P<free>\d+) bytes free, "
                        r"(?P<needed>\d+) bytes needed\): point DATA_CACHE_DIR at a larger disk, or " + re.escape(FIX))


def _unshare_prefix() -> list[str]:
    """`unshare` with a private mount namespace: as root directly, else in a user namespace of its own."""
    return ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]


@pytest.fixture(scope="module")
def small_tmp_ok(tmp_path_factory):
    probe = tmp_path_factory.mktemp("probe")
    try:
        proc = subprocess.run([*_unshare_prefix(), "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', probe],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no `unshare` here: a small TMPDIR cannot be mounted")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()})")


def run_small_tmp(s3_server, size: str, tmpdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` with TMPDIR on a tmpfs of `size`."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run([*_unshare_prefix(), "sh", "-c", script, "sh", size, str(tmpdir),
                           sys.executable, "-m", "trainer", *args], cwd=ROOT,
                          env=trainer_env(s3_server, TMPDIR=str(tmpdir), **env),
                          capture_output=True, text=True, timeout=600)


def objects(s3_server, bucket: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, **boto_kwargs())
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_prepare_data_with_a_full_tmpdir(small_tmp_ok, s3_server, bucket, tmp_path):
    proc = run_small_tmp(s3_server, "256k", tmp_path / "tmp", "prepare-data", "--source", "digits",
                         DATA_URL=f"s3://{bucket}/data/mnist")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    match = TMPDIR_FULL.fullmatch(line)
    assert match and match["dir"] == str(tmp_path / "tmp"), line
    assert "Traceback" not in proc.stderr
    assert "data/mnist/manifest.json" not in objects(s3_server, bucket, "data/")  # nothing half-made is published


def test_train_with_a_full_data_cache(small_tmp_ok, s3_server, bucket, prepared, tmp_path):
    """The shards do not fit: the line names the cache, the bytes the shard needed, and what to change."""
    proc = run_small_tmp(s3_server, "256k", tmp_path / "tmp", "train", "--epochs", "1",
                         DATA_URL=f"s3://{bucket}/data/mnist", RUN_URL=f"s3://{bucket}/runs/r",
                         MODEL_URL=f"s3://{bucket}/models/mnist")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    match = CACHE_FULL.fullmatch(line)
    assert match and match["dir"] == str(tmp_path / "tmp" / "trainer-data-cache"), line
    sizes = {e["size"] for e in prepared[1]["splits"]["train"]["shards"]}
    assert int(match["needed"]) in sizes
    assert "Traceback" not in proc.stderr
    assert not objects(s3_server, bucket, "models/")


def test_train_with_a_full_tmpdir_at_the_checkpoint(small_tmp_ok, s3_server, bucket, prepared, tmp_path):
    """The cache elsewhere, TMPDIR too small for a checkpoint (about 1.1 MB): TensorFlow's error, as one line."""
    proc = run_small_tmp(s3_server, "512k", tmp_path / "tmp", "train", "--epochs", "1",
                         DATA_URL=f"s3://{bucket}/data/mnist", RUN_URL=f"s3://{bucket}/runs/r",
                         MODEL_URL=f"s3://{bucket}/models/mnist", DATA_CACHE_DIR=str(tmp_path / "cache"))
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    match = TMPDIR_FULL.fullmatch(line)
    assert match and match["dir"] == str(tmp_path / "tmp"), line
    assert "Traceback" not in proc.stderr
    assert not objects(s3_server, bucket, "models/")


def start(s3_server, tmpdir: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=ROOT,
                            env=trainer_env(s3_server, TMPDIR=str(tmpdir), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what: str, check, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def scratch_folders(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob(scratch.PREFIX + "*"))


def event_files(tmpdir: Path) -> list[Path]:
    return list(tmpdir.rglob("events.out.tfevents.*"))


def train_until_a_checkpoint(s3_server, bucket: str, tmpdir: Path) -> subprocess.Popen:
    """A training run, once its first checkpoint is on S3 and its event file is in its scratch folder."""
    proc = start(s3_server, tmpdir, "train", "--epochs", "20", DATA_URL=f"s3://{bucket}/data/mnist",
                 RUN_URL=f"s3://{bucket}/runs/r", MODEL_URL=f"s3://{bucket}/models/mnist")
    wait_for("the first checkpoint", lambda: proc.poll() is not None or any(
        k.endswith("/_COMPLETE") for k in objects(s3_server, bucket, "runs/r/checkpoints/")))
    assert proc.poll() is None, proc.communicate()
    assert event_files(tmpdir) and scratch_folders(tmpdir)
    return proc


def test_sigterm_removes_the_scratch_folder(s3_server, bucket, prepared, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = train_until_a_checkpoint(s3_server, bucket, tmpdir)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM): stopped, temporary files removed"
    assert "Traceback" not in err
    assert scratch_folders(tmpdir) == [] and event_files(tmpdir) == []
    assert sorted(p.name for p in tmpdir.iterdir()) == ["trainer-data-cache"]  # the cache is kept


def test_the_next_start_removes_what_a_killed_attempt_left(s3_server, bucket, prepared, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    killed = train_until_a_checkpoint(s3_server, bucket, tmpdir)
    killed.kill()  # SIGKILL: no cleanup runs, as when the kubelet's grace period ends
    killed.communicate(timeout=60)
    left = scratch_folders(tmpdir)
    assert len(left) == 1 and event_files(tmpdir)
    # The next start (here a watching sidecar) removes it and makes its own.
    live = start(s3_server, tmpdir, "sync-model", "--dest", str(tmp_path / "serving"), "--watch",
                 "--interval", "0.5", MODEL_URL=f"s3://{bucket}/models/mnist")
    try:
        wait_for("the leftover's removal", lambda: (folders := scratch_folders(tmpdir)) and folders != left,
                 timeout=60)
        mine = scratch_folders(tmpdir)
        assert len(mine) == 1 and not event_files(tmpdir)
        # Another process in the same TMPDIR leaves the live watcher's folder alone.
        proc = subprocess.run([sys.executable, "-m", "trainer", "sync-model", "--dest", str(tmp_path / "once")],
                              cwd=ROOT, env=trainer_env(s3_server, TMPDIR=str(tmpdir),
                                                        MODEL_URL=f"s3://{bucket}/models/mnist"),
                              capture_output=True, text=True, timeout=120)
        assert "scratch folder(s)" not in proc.stderr, proc.stderr
        assert scratch_folders(tmpdir) == mine
    finally:
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=60)
    assert f"removed 1 scratch folder(s) left in {tmpdir} by killed earlier runs" in err, err
    assert scratch_folders(tmpdir) == []


def test_the_lines_are_in_the_operations_table():
    page = (ROOT / "docs/operations.md").read_text()
    assert "error: no space left in TMPDIR (/tmp: <free> bytes free): " + FIX in page
    assert ("error: no space left in DATA_CACHE_DIR (/tmp/trainer-data-cache: <free> bytes free, <needed> bytes "
            "needed): point DATA_CACHE_DIR at a larger disk, or " + FIX) in page
    assert "`removed 1 scratch folder(s) left in /tmp by killed earlier runs`" in page
    assert "`error: terminated (SIGTERM): stopped, temporary files removed`, exit 143" in page


def test_a_sweep_between_creating_and_locking_spares_the_live_folder(tmp_path, monkeypatch):
    """Another process starting in the same TMPDIR sweeps at the moment this one has made its folder but not
    yet locked it: the folder must survive (two trainings sharing TMPDIR once lost one's scratch mid-run)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_flock, other = fcntl.flock, []

    def flock(fd, op):
        if not other:
            other.append(None)
            other.append(scratch.sweep(tmp_path))  # the other process's start, in the window
        return real_flock(fd, op)

    monkeypatch.setattr(scratch.fcntl, "flock", flock)
    work = scratch.setup()
    try:
        assert other[1] == [] and work.is_dir() and (work / scratch.LOCK).is_file()
        assert scratch.sweep(tmp_path) == []  # locked now: a later sweep spares it too
    finally:
        scratch.cleanup()
    assert not work.exists()
