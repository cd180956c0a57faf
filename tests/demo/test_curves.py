"""demo.curves: the scalars the trainer's summary writer put on S3 (rolled over several event files) come back
exactly, per task, and are drawn as a PNG of loss and accuracy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from demo import curves
from tests.conftest import ROOT, trainer_env
from trainer.store import open_store


def write_run(logs, tasks=("chief-0", "worker-0"), steps=30) -> dict:
    """Scalars through the trainer's own `Summaries`, rolling to a new event file every 10 steps."""
    from trainer.summaries import Summaries

    want = {}
    for n, task in enumerate(tasks):
        w = Summaries(logs.child(task), background=False, roll_secs=0, min_roll_gap=0)
        try:
            for step in range(1, steps + 1):
                values = {"loss": 2.0 / step + n, "accuracy": 1 - 1.0 / (step + 1), "learning_rate": 0.003}
                w.scalars(step, values)
                for tag, value in values.items():
                    want.setdefault(task, {}).setdefault(tag, []).append((step, pytest.approx(value)))
                if step % 10 == 0:
                    w.sync.round()
        finally:
            w.close()
    return want


def test_reads_back_every_scalar_of_every_task_across_rolled_files(bucket):
    logs = open_store(f"s3://{bucket}/runs/r1/logs")
    want = write_run(logs)
    assert len([k for k in logs.list() if k.startswith("chief-0/")]) >= 3  # it did roll
    got = curves.read_scalars(logs)
    assert got == want


def test_plot_writes_a_png_with_both_panels(bucket, tmp_path):
    from PIL import Image

    logs = open_store(f"s3://{bucket}/runs/r2/logs")
    write_run(logs)
    out = curves.plot(curves.read_scalars(logs), tmp_path / "sub" / "training.png", title="r2")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1100, 400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50  # lines, text and axes, not a blank canvas
    with pytest.raises(ValueError, match="no loss scalars"):
        curves.plot({}, tmp_path / "empty.png")


def test_command_line_against_the_s3_server(s3_server, bucket, tmp_path):
    write_run(open_store(f"s3://{bucket}/runs/r3/logs"), tasks=("chief-0",))
    out = tmp_path / "training.png"
    proc = subprocess.run([sys.executable, "-m", "demo.curves", f"s3://{bucket}/runs/r3", str(out)], cwd=ROOT,
                          env=trainer_env(s3_server), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and out.stat().st_size > 10_000
