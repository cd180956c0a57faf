"""Benchmark 7: TensorBoard over many runs. The stack's TensorBoard (its pod's command and environment, the
image's TF-free TensorBoard, which reads `s3://` through boto3) is started on a bucket holding 10, 100 and 200
runs, each a chief's and a worker's event files like a default 40-epoch run's; the figure is the time from
its start until `/data/plugin/scalars/tags` lists the newest run's scalars. The newest run's name sorts last,
so it is the last one TensorBoard's loader reaches (the worst case of its order).

Each count is measured with the logdir on every run (`s3://<bucket>/runs/`, what the stack served before) and
on the newest run's logs only (`s3://<bucket>/runs/<run>/logs/`, the stack's default now)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from bench.harness import BUCKET, Bench
from demo.settings import TB_VENV, tensorboard_install

TAGS = ("loss", "accuracy", "examples_per_sec", "learning_rate")
POINTS = 88  # a default run: 40 epochs x 22 steps, scalars every 10 steps
TASKS = ("chief-0", "worker-0")


def _event_file(folder: Path) -> bytes:
    """One task's event file: POINTS steps of the scalars the trainer writes."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for i in range(1, POINTS + 1):
            for tag in TAGS:
                tf.summary.scalar(tag, 1.0 / i, step=10 * i)
    writer.close()
    (path,) = folder.glob("events.out.tfevents.*")
    return path.read_bytes()


def _upload_runs(client, prefix: str, count: int, events: bytes) -> str:
    """`count` runs under `prefix`, `run-0000` ... ; returns the newest (last) run's name."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"run-{i:04d}" for i in range(count)]
    keys = [f"{prefix}{name}/logs/{task}/events.out.tfevents.1700000000.bench-{task}" for name in names
            for task in TASKS]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=events), keys))
    return names[-1]


def _time_to_newest(b: Bench, name: str, logdir: str, newest: str, timeout: float) -> dict:
    """Starts the stack's TensorBoard on `logdir`; seconds until the newest run's chief scalars are listed."""
    exe = TB_VENV / "bin" / "tensorboard"
    p = b.stack.tensorboard()
    cmd = [str(exe), *p.cmd[1:]]
    cmd[cmd.index("--logdir") + 1] = logdir
    (port,) = p.listens.values()
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
    start = time.monotonic()
    proc = b.sup.start(name, cmd, p.env)
    try:
        while time.monotonic() - start < timeout:
            if proc.returncode is not None:
                raise RuntimeError(f"{name}: TensorBoard exited with code {proc.returncode} (see {proc.log})")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    runs = json.load(r)
            except (OSError, ValueError):
                runs = {}
            for run, tags in runs.items():
                if run.endswith("chief-0") and (newest in run or not run.startswith("run-")) and set(TAGS) <= set(tags):
                    return {"seconds": round(time.monotonic() - start, 2), "runs_listed": len(runs)}
            time.sleep(0.5)
        return {"seconds": None, "timed_out_s": timeout}
    finally:
        proc.stop()


def runs(b: Bench) -> None:
    import boto3

    if not (TB_VENV / "bin" / "tensorboard").exists():  # the image's TensorBoard, as `TENSORBOARD=1 make demo`
        b.sup.run("tbruns", "tensorboard-install", tensorboard_install(), dict(os.environ), timeout=900)
    client = boto3.client("s3", endpoint_url=b.server.endpoint)
    events = _event_file(b.out / "tensorboard-runs-events")
    timeout = b.size["tb_timeout_s"]
    figures: dict[int, dict] = {}
    for count in b.size["tb_runs"]:
        prefix = f"tbruns-{count}/runs/"
        newest = _upload_runs(client, prefix, count, events)
        every = _time_to_newest(b, f"tensorboard-{count}-every-run", f"s3://{BUCKET}/{prefix}", newest, timeout)
        current = _time_to_newest(b, f"tensorboard-{count}-current-run",
                                  f"s3://{BUCKET}/{prefix}{newest}/logs/", newest, timeout)
        figures[count] = {"every_run": every, "current_run": current}
    b.details["tensorboard_runs"] = {"runs": figures, "points_per_task": POINTS, "tags": list(TAGS),
                                     "tasks": list(TASKS), "event_file_bytes": len(events)}

    def text(f: dict) -> str:
        return f"{f['seconds']:.1f} s" if f["seconds"] is not None else f"> {f['timed_out_s']:.0f} s"

    b.rows.append(("7 TensorBoard runs", "newest run's scalars listed after: " + "; ".join(
        f"{n} runs {text(f['every_run'])} (logdir every run) / {text(f['current_run'])} (its own logs)"
        for n, f in figures.items())))
