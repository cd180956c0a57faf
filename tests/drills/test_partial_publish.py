"""Fault drill: a new model version is being uploaded (its files are on S3, its `_COMPLETE` not yet).

Meanwhile the TF Serving sidecar (`sync-model --watch`), a one-shot `sync-model` and `evaluate` must keep
serving the previous complete version, and the folder TF Serving reads must never show the new one until it
is whole. Then the upload finishes and the watching sidecar brings the new version down. Each process is the
dev stack's own (the serving pod's sidecar and init container, the retraining template's evaluate step: see
tests/drills/conftest.py), on this test's bucket.
"""

import json
import sys
import threading
import time

import pytest

from demo.podspecs import Process
from demo.supervisor import Proc, Supervisor
from trainer import publish
from trainer.store import open_store

EXPORT = """
import sys
from trainer import model
for seed, path in zip((1, 2), sys.argv[1:]):
    model.export(model.build(seed), path)
"""


class HeldBeforeComplete:
    """A store whose publish stops right before `_COMPLETE`, until released: an upload caught in flight."""

    def __init__(self, store):
        self.store = store
        self.files_up = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put_bytes(self, key, data):
        if key == publish.COMPLETE:
            self.files_up.set()
            if not self.release.wait(180):
                raise TimeoutError("never released")
        return self.store.put_bytes(key, data)


def watch_dir(path, stop: threading.Event, seen: set) -> None:
    while not stop.is_set():
        if path.is_dir():
            seen.update(p.name for p in path.iterdir())
        time.sleep(0.02)


@pytest.mark.slow
def test_readers_keep_the_previous_version_while_a_new_one_uploads(job_factory, tmp_path):
    job = job_factory()
    stack = job.stack
    sup = Supervisor(tmp_path / "logs")

    def start(p: Process, name: str | None = None) -> Proc:
        return sup.start(name or p.name, p.cmd, {**p.env, **job.urls})

    def trainer(p: Process, name: str | None = None) -> Proc:
        proc = start(p, name)
        assert proc.wait(timeout=180) == 0, "\n".join(proc.tail)
        return proc

    try:
        trainer(stack.prepare_data().with_args("--source", "digits"))
        exported = sup.start("export", [sys.executable, "-c", EXPORT, str(tmp_path / "v1"), str(tmp_path / "v2")],
                             job.env)
        assert exported.wait(timeout=180) == 0, "\n".join(exported.tail)
        for v in ("v1", "v2"):  # the stack's sidecar serves only evaluated versions: these pass its gate
            (tmp_path / v / "_EVAL.json").write_text(json.dumps({"accuracy": 0.99, "loss": 0.1, "count": 360}))
        models = open_store(job.urls["MODEL_URL"], "MODEL_URL")
        publish.publish_dir(tmp_path / "v1", models.child("1"))

        serving = stack.model_dir()  # the serving pod's model volume, which TF Serving reads
        sidecar = start(stack.sync_model(watch=True).with_args("--interval", "0.3"), "sidecar")
        deadline = time.monotonic() + 60
        while not (serving / "1").is_dir():
            assert sidecar.returncode is None and time.monotonic() < deadline, "\n".join(sidecar.tail)
            time.sleep(0.1)

        held = HeldBeforeComplete(models.child("2"))
        upload = threading.Thread(target=publish.publish_dir, args=(tmp_path / "v2", held))
        upload.start()
        assert held.files_up.wait(60), "the upload never got to _COMPLETE"
        stop, seen = threading.Event(), set()
        watcher = threading.Thread(target=watch_dir, args=(serving, stop, seen))
        watcher.start()
        try:
            assert publish.next_version(models) == 3  # version 2 is on S3, partially: its number is taken
            assert publish.complete_versions(models) == [1]
            once = trainer(stack.sync_model().with_args("--dest", str(tmp_path / "once")), "sync-once")
            assert json.loads(once.tail[-1])["versions"] == [1]
            scored = trainer(stack.evaluate("drill")).result()
            assert scored["model_version"] == 1 and scored["count"] == 360
            time.sleep(1.0)  # a few more passes of the watching sidecar over the half-uploaded version
        finally:
            stop.set()
            watcher.join()
            held.release.set()
            upload.join(timeout=60)
        assert seen == {"1"}, f"TF Serving's folder showed {sorted(seen)} during the upload"
        assert sorted(p.name for p in (tmp_path / "once").iterdir()) == ["1"]

        # The upload completes: the watching sidecar brings version 2 down, whole.
        deadline = time.monotonic() + 60
        while not (serving / "2").is_dir():
            assert sidecar.returncode is None and time.monotonic() < deadline, "\n".join(sidecar.tail)
            time.sleep(0.1)
        manifest = publish.read_complete(models.child("2"))
        on_disk = sorted(p.relative_to(serving / "2").as_posix() for p in (serving / "2").rglob("*") if p.is_file())
        assert on_disk == sorted(f["path"] for f in manifest["files"])
    finally:
        sup.stop_all()
