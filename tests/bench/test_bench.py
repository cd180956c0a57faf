"""`python -m bench --tiny` (what `make bench` runs, on toy sizes) runs every measurement end to end and ends
with the JSON line. Speed is not checked here: the figures come from `make bench`, see docs/performance.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"input_s3_vs_local", "train_s3_vs_local", "workers_2_vs_1", "tensorboard_lag_s", "publish_s3_vs_local",
        "render_s_1", "render_s_64", "input_s3_warm_vs_local", "examples_per_s_1", "examples_per_s_2",
        "examples_per_s_3", "summary_upload_mb_hour_1", "summary_upload_mb_hour_10", "trainer_vs_keras_fit",
        "input_s3_vs_local_median3", "input_s3_server_cpu_share"}
GOALS = {"input_s3_vs_local", "train_s3_vs_local", "workers_2_vs_1", "tensorboard_lag_s", "publish_s3_vs_local",
         "render_s_1", "render_s_64", "trainer_vs_keras_fit", "input_s3_vs_local_median3"}


@pytest.mark.slow
def test_bench_tiny_prints_the_table_and_the_json_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("S3_ENDPOINT", "DATA_URL", "RUN_URL", "MODEL_URL")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    values = json.loads(lines[-1])
    assert set(values) == KEYS
    for key, value in values.items():
        assert isinstance(value, float | int) and value > 0, (key, value)
    for key in GOALS:  # the table names each figure with its goal
        assert any(line.startswith(key + " ") and ("yes" in line or "NO" in line) for line in lines), key
    # Summary uploads stay flat: the 10th hour moves no more than the first (rolled event files).
    assert values["summary_upload_mb_hour_10"] <= 1.2 * values["summary_upload_mb_hour_1"]
    details = json.loads((tmp_path / "bench.json").read_text())
    assert details["size"] == "tiny"
    pair = details["details"]["train"]["pairs"][0]
    assert pair["s3"]["result"]["steps"] == pair["local"]["result"]["steps"] > 0  # same steps on both sides
    # Ours against plain Keras: the same steps of the same batch size on both sides.
    round_ = details["details"]["keras"]["rounds"][0]
    assert round_["trainer"]["result"]["steps"] == round_["keras_fit"]["result"]["steps"] > 0
    assert round_["trainer"]["result"]["global_batch_size"] == round_["keras_fit"]["result"]["batch_size"]
    # Three cold-read measurements, the median of their ratios, and the S3 server's share of their CPU.
    reads = details["details"]["input_cold_reads"]
    assert len(reads) == 3
    assert values["input_s3_vs_local_median3"] == sorted(r["ratio_cold"] for r in reads)[1]
    assert 0 < values["input_s3_server_cpu_share"] < 1


def test_bench_rejects_an_unknown_benchmark():
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "input,warp"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert "unknown benchmark(s) ['warp']" in proc.stderr
