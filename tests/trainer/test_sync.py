"""sync-model, the TF Serving sidecar, as a real process against the real S3 server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from demo.s3server import S3Server
from tests.conftest import ROOT, trainer_env
from tests.helpers.killers import KILL_MID_FETCH, KILL_MID_PUBLISH
from tests.helpers.process import stdout_json
from tests.helpers.versions import make_dir, tree
from trainer.publish import publish_dir
from trainer.store import open_store


def publish(store, version: int, tmp_path: Path, files: int = 3) -> Path:
    src = make_dir(tmp_path / f"src-{version}-{time.monotonic_ns()}", version, files)
    publish_dir(src, store.child(str(version)))
    return src


def visible(dest: Path) -> list[str]:
    """What TF Serving would consider: every entry of dest, hidden ones included (so leftovers show)."""
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_sync_once_keeps_newest(s3_models, run_trainer, tmp_path):
    sources = {v: publish(s3_models, v, tmp_path) for v in (1, 2, 3)}
    dest = tmp_path / "serving"
    env = {"MODEL_URL": s3_models.url}
    proc = run_trainer("sync-model", "--dest", str(dest), "--keep", "2", env=env, check=True)
    result = stdout_json(proc)
    assert result["versions"] == [2, 3] and result["added"] == [3, 2] and result["remote"] == [1, 2, 3]
    assert visible(dest) == ["2", "3"]
    assert tree(dest / "3") == tree(sources[3])

    publish(s3_models, 4, tmp_path)
    proc = run_trainer("sync-model", "--dest", str(dest), "--keep", "2", env=env, check=True)
    result = stdout_json(proc)
    assert result["added"] == [4] and result["removed"] == [2]
    assert visible(dest) == ["3", "4"]


def test_no_complete_version_is_an_error(s3_models, run_trainer, tmp_path):
    # Only an incomplete upload: files, no _COMPLETE.
    src = make_dir(tmp_path / "v1", 1)
    for p in src.rglob("*"):
        if p.is_file():
            s3_models.child("1").put_file(p.relative_to(src).as_posix(), p)
    dest = tmp_path / "serving"
    proc = run_trainer("sync-model", "--dest", str(dest), env={"MODEL_URL": s3_models.url})
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no complete model version") and s3_models.url in line
    assert visible(dest) == []


@pytest.mark.parametrize("url", ["http://minio:9000/models", "models/mnist", "s3://UPPER/models"])
def test_bad_model_url(run_trainer, tmp_path, url):
    proc = run_trainer("sync-model", "--dest", str(tmp_path / "d"), env={"MODEL_URL": url})
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "MODEL_URL" in line and url in line and "s3://" in line


def test_does_not_import_tensorflow(s3_models, s3_server, tmp_path):
    publish(s3_models, 1, tmp_path)
    code = textwrap.dedent(
        f"""
        import sys
        from trainer.cli import main
        rc = main(["sync-model", "--dest", {str(tmp_path / "serving")!r}, "--model-url", {s3_models.url!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorboard"))
        print("RESULT", rc, heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=trainer_env(s3_server),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "RESULT 0 []"
    assert visible(tmp_path / "serving") == ["1"]


def test_never_exposes_a_partial_version(s3_models, s3_server, run_trainer, tmp_path):
    env = {"MODEL_URL": s3_models.url}
    dest = tmp_path / "serving"
    first = publish(s3_models, 1, tmp_path)

    # An exporter dies after uploading 2 of 6 files of version 2: sync still shows version 1 only.
    src = make_dir(tmp_path / "v2", 2, files=6)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_PUBLISH, str(src), s3_models.child("2").url],
                            cwd=ROOT, env=trainer_env(s3_server), capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert s3_models.child("2").list() and not s3_models.child("2").exists("_COMPLETE")
    run_trainer("sync-model", "--dest", str(dest), env=env, check=True)
    assert visible(dest) == ["1"] and tree(dest / "1") == tree(first)

    # Version 3 is complete, but the sidecar itself dies mid-download: no partial "3" appears ...
    third = publish(s3_models, 3, tmp_path, files=6)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_FETCH, "sync-model", "--dest", str(dest)],
                            cwd=ROOT, env=trainer_env(s3_server, KILL_AFTER="3", **env), capture_output=True,
                            timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [n for n in visible(dest) if not n.startswith(".")] == ["1"]
    assert tree(dest / "1") == tree(first)
    # ... and the next run clears the leftover temp folder and completes it.
    result = json.loads(run_trainer("sync-model", "--dest", str(dest), "--keep", "1", env=env,
                                    check=True).stdout.strip().splitlines()[-1])
    assert result["added"] == [3] and result["removed"] == [1]
    assert visible(dest) == ["3"] and tree(dest / "3") == tree(third)


def test_corrupt_version_is_not_exposed(s3_models, run_trainer, tmp_path):
    publish(s3_models, 1, tmp_path)
    publish(s3_models, 2, tmp_path)
    s3_models.child("2").put_bytes("saved_model.pb", b"truncated")
    dest = tmp_path / "serving"
    proc = run_trainer("sync-model", "--dest", str(dest), env={"MODEL_URL": s3_models.url})
    # Version 2 is refused in one line and marked, so no sidecar tries it again; the intact version 1 is served.
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "rejected version" in ln]
    assert line.endswith(f"rejected version 2: file does not match its checksum in _COMPLETE "
                         f"({s3_models.url_of('2/saved_model.pb')})")
    assert stdout_json(proc)["rejected"] == [2]
    assert visible(dest) == ["1"] and s3_models.exists("2/_REJECTED")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_watch_follows_new_versions_and_survives_an_outage(tmp_path, monkeypatch):
    """A private S3 server, so the test can stop it: the watcher logs the outage and carries on."""
    server = S3Server().start()
    port = server.port
    try:
        env = {**trainer_env(server), "S3_MAX_ATTEMPTS": "1", "S3_CONNECT_TIMEOUT": "1"}
        for key in ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
            monkeypatch.setenv(key, env[key])

        def fresh_bucket():
            import boto3

            client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
            client.create_bucket(Bucket="models")
            return open_store("s3://models/mnist")

        s3_models = fresh_bucket()
        dest = tmp_path / "serving"
        log_path = tmp_path / "sync.log"
        with open(log_path, "w") as log:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "trainer", "sync-model", "--dest", str(dest), "--watch",
                 "--interval", "0.3", "--keep", "1", "--model-url", s3_models.url],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: "no complete version" in log_path.read_text(), what="the waiting line")
            publish(s3_models, 1, tmp_path)
            wait_for(lambda: visible(dest) == ["1"], what="version 1")
            s3_models.child("2").put_bytes("saved_model.pb", b"half an upload")  # no _COMPLETE
            publish(s3_models, 3, tmp_path)
            wait_for(lambda: visible(dest) == ["3"], what="version 3 replacing 1")

            server.stop()  # outage
            wait_for(lambda: "cannot reach the S3 endpoint" in log_path.read_text(), what="the outage line")
            assert watcher.poll() is None and visible(dest) == ["3"]  # still serving what it had
            server = S3Server(port=port).start()  # back (empty: moto keeps data in memory)
            s3_models = fresh_bucket()
            publish(s3_models, 4, tmp_path)
            wait_for(lambda: visible(dest) == ["4"], what="version 4 after the outage")
        finally:
            watcher.send_signal(signal.SIGTERM)
            rc = watcher.wait(timeout=20)
        text = log_path.read_text()
        assert rc == 0, text
        lines = [line.split(" sync-model ", 1)[1] for line in text.splitlines() if " sync-model " in line]
        assert "added version 1" in lines and "added version 3" in lines and "removed version 1" in lines
        assert "added version 4" in lines and "removed version 3" in lines
        assert not any("version 2" in line for line in lines)
        assert any(line.startswith("error: cannot reach the S3 endpoint") for line in lines)
        assert lines[-1] == "stopped"
    finally:
        server.stop()


@pytest.mark.parametrize("setting,value,message", [
    ("S3_ENDPOINT", "minio.minio:9000", "S3_ENDPOINT must be a full URL with scheme (minio.minio:9000)"),
    ("S3_ENDPOINT", "http://minio minio:9000", "S3_ENDPOINT must be a full URL with scheme (http://minio minio:9000)"),
    ("S3_ENDPOINT", "http://minio:notaport", "S3_ENDPOINT must be a full URL with scheme (http://minio:notaport)"),
    ("S3_MAX_ATTEMPTS", "many", "S3_MAX_ATTEMPTS must be a positive number (many)"),
    ("AWS_REGION", "us east 1", "AWS_REGION is not a region name (us east 1)"),
])
def test_watch_exits_on_a_permanent_error(run_trainer, s3_models, tmp_path, setting, value, message):
    """A configuration error is not an outage: the watcher exits 2 at once (the pod restarts visibly)."""
    start = time.monotonic()
    proc = run_trainer("sync-model", "--dest", str(tmp_path / "serving"), "--watch", "--interval", "0.2",
                       env={"MODEL_URL": s3_models.url, setting: value}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - start < 30
    assert proc.stderr.count(message) == 2, proc.stderr  # the log line, then the CLI's one-line error
    assert "not retrying" in proc.stderr and "retrying in" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}")


def test_permanent_and_transient_kinds():
    """Which S3 failures a watcher retries: what can end by itself, not what needs new configuration."""
    import botocore.exceptions as bx

    from trainer import s3

    def client_error(code: str, status: int = 400):
        return bx.ClientError({"Error": {"Code": code, "Message": code},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")

    transient = [bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), client_error("NoSuchBucket", 404),
                 client_error("InternalError", 500), client_error("SlowDown", 503), client_error("AccessDenied", 403)]
    permanent = [client_error("InvalidAccessKeyId", 403), client_error("SignatureDoesNotMatch", 403),
                 bx.NoCredentialsError()]
    assert all(s3.translate(e, "bucket").transient for e in transient)
    assert not any(s3.translate(e, "bucket").transient for e in permanent)


def test_a_version_too_large_for_the_volume_is_refused_in_one_line(models, run_trainer, tmp_path):
    """Each version here is ~10 kB: with --keep 1 two versions share the volume while one lands, so 24 kB
    holds one of them, and 12 kB none: the newer, larger version is refused, the older one served; with no
    version small enough, the one-shot run says which version and how large."""
    publish(models, 1, tmp_path, files=2)
    publish(models, 2, tmp_path, files=4)
    dest = tmp_path / "serving"
    env = {"MODEL_URL": models.url}
    size2 = sum(models.child("2").list().values())
    size1 = sum(models.child("1").list().values())
    assert size1 < size2
    limit = 2 * size1 + 1  # version 1 fits its share, version 2 does not
    proc = run_trainer("sync-model", "--dest", str(dest), "--keep", "1", "--max-bytes", str(limit), env=env, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["versions"] == [1] and result["too_big"] == {"2": size2}
    (line,) = [x for x in proc.stderr.splitlines() if "refused version 2" in x]
    assert f"{size2} bytes" in line
    empty = tmp_path / "empty"
    proc = run_trainer("sync-model", "--dest", str(empty), "--keep", "1", "--max-bytes", "100", env=env)
    assert proc.returncode == 2
    assert "model version too large for the models volume" in proc.stderr and f"version 2: {size2} bytes" in proc.stderr
    assert visible(empty) == []
