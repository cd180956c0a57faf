"""sync-model's Prometheus metrics, read over HTTP from a real watching process against the real S3 server:
the served version, the last successful sync, the versions the promotion gate refused, and failed syncs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, trainer_env
from tests.helpers.versions import make_dir
from tests.trainer.test_sync import visible, wait_for
from trainer.publish import publish_dir
from trainer.store import open_store


@pytest.fixture
def models(bucket):
    return open_store(f"s3://{bucket}/models/mnist", "MODEL_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of the metrics page."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def publish_scored(models, version: int, tmp_path, accuracy: float | None):
    src = make_dir(tmp_path / f"src-{version}", version)
    if accuracy is not None:  # the chief's evaluation, inside the version before _COMPLETE
        (src / "_EVAL.json").write_text(json.dumps({"accuracy": accuracy, "loss": 0.1, "examples": 100,
                                                    "run_url": "s3://b/runs/r"}))
    publish_dir(src, models.child(str(version)))


def test_watch_exports_served_version_successes_rejections_and_errors(models, s3_server, tmp_path):
    port = free_port()
    dest = tmp_path / "serving"
    log_path = tmp_path / "sync.log"
    env = trainer_env(s3_server, MODEL_URL=models.url)
    publish_scored(models, 1, tmp_path, 0.95)
    with open(log_path, "w") as log:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "trainer", "sync-model", "--dest", str(dest), "--watch", "--interval", "0.3",
             "--min-accuracy", "0.5", "--metrics-port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: visible(dest) == ["1"], what="version 1")
        wait_for(lambda: scrape(port).get(("sync_model_served_version", ())) == 1, what="served version 1")
        first = scrape(port)[("sync_model_last_success_timestamp_seconds", ())]
        assert abs(first - time.time()) < 60
        assert scrape(port)[("sync_model_rejected_versions_total", ())] == 0

        publish_scored(models, 2, tmp_path, 0.1)  # below --min-accuracy: refused, version 1 stays
        wait_for(lambda: scrape(port).get(("sync_model_rejected_versions_total", ())) == 1, what="the rejection")
        metrics = scrape(port)
        assert metrics[("sync_model_rejected_version", (("version", "2"),))] == 1
        assert metrics[("sync_model_served_version", ())] == 1 and visible(dest) == ["1"]
        assert metrics[("sync_model_last_success_timestamp_seconds", ())] >= first

        publish_scored(models, 3, tmp_path, 0.96)
        wait_for(lambda: scrape(port).get(("sync_model_served_version", ())) == 3, what="served version 3")
        assert scrape(port)[("sync_model_sync_errors_total", (("kind", "transient"),))] == 0

        # A version whose file is damaged after publishing: refused at fetch, counted like a gate refusal.
        publish_scored(models, 4, tmp_path, 0.97)
        models.child("4").put_bytes("saved_model.pb", b"tampered")
        wait_for(lambda: scrape(port).get(("sync_model_rejected_versions_total", ())) == 2, what="the corrupt one")
        assert scrape(port)[("sync_model_served_version", ())] == 3
    finally:
        watcher.send_signal(signal.SIGTERM)
        rc = watcher.wait(timeout=20)
    assert rc == 0, log_path.read_text()


def test_sync_errors_are_counted_while_the_bucket_is_gone(s3_server, tmp_path):
    port = free_port()
    env = trainer_env(s3_server, MODEL_URL="s3://no-such-bucket-here/models/mnist", S3_MAX_ATTEMPTS="1")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "trainer", "sync-model", "--dest", str(tmp_path / "serving"), "--watch",
         "--interval", "0.2", "--metrics-port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def errors() -> float:
            try:
                return scrape(port).get(("sync_model_sync_errors_total", (("kind", "transient"),)), 0)
            except OSError:
                return 0

        wait_for(lambda: errors() >= 2, what="two counted transient errors")
        metrics = scrape(port)
        assert metrics[("sync_model_served_version", ())] == 0
        assert metrics[("sync_model_last_success_timestamp_seconds", ())] == 0
        assert metrics[("sync_model_sync_errors_total", (("kind", "permanent"),))] == 0
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=20)


def test_metrics_port_needs_watch(run_trainer, models, tmp_path):
    proc = run_trainer("sync-model", "--dest", str(tmp_path / "d"), "--metrics-port", "9102",
                       env={"MODEL_URL": models.url})
    assert proc.returncode == 2
    assert "--metrics-port takes a port (1-65535) and goes with --watch (9102)" in proc.stderr
