"""The real browser against the real TensorBoard on a run's S3 logs: headless Chromium (Debian's chromium and
chromium-driver, installed by .ci/run) opens TensorBoard's scalars page, which TensorBoard (the tensorboard
image's venv, built by `make test`) serves from event files the trainer's summary writer put on the embedded
S3 server; the run's loss chart must be on the page, with a line per task, and the screenshot a PNG."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from demo import browser, supervisor
from demo.s3server import free_port
from tests.demo.test_curves import write_run
from trainer.store import open_store


def tensorboard_exe() -> Path:
    """TensorBoard of the tensorboard image's venv (requirements/tensorboard.txt: no TensorFlow, so it reads
    s3:// itself), which `make test` builds (`make image-venvs`)."""
    from tests.images import venvs

    venv = venvs.ready("tensorboard")
    if venv is None:
        pytest.fail(f"{venvs.path('tensorboard')} is missing: `make image-venvs` builds it")
    return venv / "bin" / "tensorboard"


@pytest.fixture
def tensorboard(s3_server, bucket, tmp_path):
    """TensorBoard on s3://<bucket>/runs/ with one run (chief-0, worker-0) written by the trainer's writer."""
    write_run(open_store(f"s3://{bucket}/runs/run-7/logs"), steps=40)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in supervisor.URL_VARS}
    env.update(s3_server.env())
    log = open(tmp_path / "tensorboard.log", "w")
    proc = subprocess.Popen([str(tensorboard_exe()), "--logdir", f"s3://{bucket}/runs/", "--host", "127.0.0.1",
                             "--port", str(port), "--reload_interval", "2"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "TensorBoard did not answer within 120 s"
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_chromium_is_installed():
    assert browser.missing() is None  # .ci/run installs it (apt-get install -y chromium chromium-driver)


@pytest.mark.slow
def test_the_runs_loss_chart_is_on_tensorboards_scalars_page(tensorboard, tmp_path):
    from PIL import Image

    with browser.Page(tensorboard, "loss") as page:
        card = page.wait_for("loss", "run-7", timeout=120)
        assert sorted(card["runs"]) == ["run-7/logs/chief-0", "run-7/logs/worker-0"]
        assert card["lines"] >= 2  # drawn, one line per task (plus TensorBoard's smoothed copies)
        assert "loss" in [c["tag"] for c in page.charts()][:1]  # the filter puts the loss chart first
        shot = page.screenshot(tmp_path / "tensorboard.png")
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size[0] >= 1000
    with pytest.raises(TimeoutError, match="no 'nothing-here' chart"):
        with browser.Page(tensorboard, "nothing-here") as page:
            page.wait_for("nothing-here", "run-7", timeout=5)
