"""`python -m demo` (what `make demo` runs), end to end as a real process: every stage, the live epoch lines,
the summary and the Pulumi commands; and on a failure, the failed stage, its log, and nothing left running."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["s3 server", "render", "prepare-data", "train", "sync-model", "evaluate", "predict"]


def run_demo(tmp_path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATASET", "WORKERS", "EPOCHS", "TENSORBOARD", "TRAIN_ARGS", "S3_ENDPOINT",
                          "DATA_URL", "RUN_URL", "MODEL_URL", "TF_CONFIG")}
    clean.update({"DEMO_DIR": str(tmp_path / "demo"), "PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=timeout)


def s3_endpoint(out: str) -> str:
    return re.search(r"^\[1/\d\] s3 server .* (http://127\.0\.0\.1:\d+)$", out, re.M).group(1)


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment mentions `marker` (the demo's unique log folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and \
                    (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"


def assert_all_stopped(marker: str, endpoint: str) -> None:
    deadline = time.monotonic() + 10
    while processes_with(marker):
        assert time.monotonic() < deadline, f"left running: {[_cmdline(p) for p in processes_with(marker)]}"
        time.sleep(0.1)
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint, timeout=2)


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_the_summary(tmp_path):
    proc = run_demo(tmp_path, timeout=600, EPOCHS="6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    stage_lines = [line for line in out.splitlines() if re.match(r"^\[\d/\d\] ", line)]
    assert [re.match(r"^\[\d/\d\] (.+?)\s+\d+\.\d s", s).group(1) for s in stage_lines] == STAGES
    assert len(re.findall(r"^ +epoch \d+/6 .*loss [\d.]+ accuracy [\d.]+ examples/s \d+", out, re.M)) == 6
    accuracy = float(re.search(r"accuracy \(evaluate, test split\)\s+([\d.]+)", out).group(1))
    assert accuracy >= 0.9
    assert int(re.search(r"objects written to S3\s+(\d+)", out).group(1)) > 10
    assert re.search(r"model version\s+1$", out, re.M)
    assert re.search(r"^  promotion \(sync-model gate\)\s+version 1, accuracy (0\.9\d+|1\.0000): promoted "
                     r"\(min-accuracy 0\.5, max-regression 0\.02\)$", out, re.M), out
    error_rate = float(re.search(r"error rate ([\d.]+)", out).group(1))
    assert error_rate <= 0.1
    assert out.splitlines()[-4:] == [
        "  pulumi stack init dev",
        "  pulumi config set --path kubeflow-e2e:cluster.context <context>   # kubectl config get-contexts",
        "  pulumi config set kubeflow-e2e:workers 1",
        "  pulumi up",
    ]
    logs = tmp_path / "demo"
    png = logs / "training.png"  # the curves, read back from the run's event files on S3
    assert re.search(rf"^ +training curves +{re.escape(str(png))}$", out, re.M), out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    for name in ("prepare-data", "train-chief-0", "train-worker-0", "sync-model", "evaluate", "predict"):
        assert (logs / f"{name}.log").is_file(), name
    assert_all_stopped(str(logs), s3_endpoint(out))


def test_a_failed_stage_is_named_with_its_log_and_everything_stops(tmp_path):
    proc = run_demo(tmp_path, timeout=300, TRAIN_ARGS="--learning-rate -1")
    assert proc.returncode == 1
    assert "FAILED at stage 'train'" in proc.stderr
    log = Path(re.search(r"log: (\S+\.log)", proc.stderr).group(1))
    assert log.parent == tmp_path / "demo" and log.name.startswith("train-")
    assert "error: --learning-rate must be a positive number" in log.read_text()
    assert "--learning-rate must be a positive number" in proc.stderr
    assert "[3/7] prepare-data" in proc.stdout and "sync-model" not in proc.stdout
    assert_all_stopped(str(tmp_path / "demo"), s3_endpoint(proc.stdout))


def test_interrupting_the_demo_mid_training_stops_every_process(tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in ("WORKERS", "EPOCHS", "TRAIN_ARGS", "TENSORBOARD")}
    clean.update({"DEMO_DIR": str(tmp_path / "demo"), "PYTHONPATH": str(ROOT)})
    demo = subprocess.Popen([sys.executable, "-m", "demo"], cwd=ROOT, env=clean, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in demo.stdout:  # mid-training: the chief has finished its first epoch
            lines.append(line)
            if re.match(r"^ +epoch 1/", line):
                break
        assert len(processes_with(str(tmp_path / "demo"))) == 4, "".join(lines)  # demo, S3 server, chief, worker
        demo.terminate()
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130
    assert "interrupted: stopping every process the demo started" in err
    assert_all_stopped(str(tmp_path / "demo"), s3_endpoint("".join(lines)))


def test_the_summary_states_the_promotion_decision():
    from demo.report import promotion

    gate = {"min_accuracy": 0.9, "max_regression": 0.02, "promoted": {"1": 0.99, "3": 0.9861},
            "refused": {"2": "accuracy 0.4000 < min-accuracy 0.9000"}}
    assert promotion({"gate": gate}) == ("version 3, accuracy 0.9861: promoted (min-accuracy 0.9, max-regression "
                                         "0.02); version 2: rejected (accuracy 0.4000 < min-accuracy 0.9000)")
    assert promotion({}) == "-"
