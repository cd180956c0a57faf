"""`python -m bench` (`make bench`): six ratios, each measured side by side in one run on the same data, and
the figures that put them in context.

    python -m bench [--tiny] [--only input,train,workers,tensorboard,uploads,publish,render]

1. input        the training split read from S3 through the trainer's data path vs the same shard files read
                from local disk with tf.data (bench/input_pipeline.py; one cold pass)          goal >= 0.9
                (and input_s3_warm_vs_local: the same with the shard cache filled)
2. train        `train` with DATA_URL, RUN_URL and MODEL_URL on S3 vs all three file:///, same steps, one
                process: local / S3 wall time of the whole command, median over back-to-back pairs  >= 0.95
3. workers      global examples/s, chief + 1 worker vs a lone chief, each process pinned to its own core and
                held to one TF thread (TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=1); the per-process
                batch is the same (64), so 2 workers train a global batch of 128; median over rounds  >= 1.6
                (and the scaling curve examples_per_s_1, _2, _3: 3 processes share the 2 cores)
4. tensorboard  seconds from a scalar being written by the trainer's summary writer to it being readable
                from the event file on S3 (the worst case over every scalar written)          goal <= 10
4b. uploads     MB the summary writer uploads in the 1st and the 10th hour of a simulated 10-hour run
                (summary_upload_mb_hour_1, summary_upload_mb_hour_10): flat, not growing with the run
5. publish      export + upload as a model version to S3 vs the same export saved locally     goal <= 3
6. render       `python -m render --stack dev` at workers=1 and workers=64 (whole command) goal <= 2 s

Training (2, 3) runs on an MNIST-sized split of random pixels, prepared by `prepare-data` like any source.
The embedded S3 server (moto on 127.0.0.1) stands in for S3. Every `python -m trainer` process is the dev
stack's own (demo/podspecs.py: the Workflow's prepare-data, the TFJob's replicas), with only what a measurement
varies set on top (URLs, flags, thread counts). Prints a table, then as its last line one JSON object with the
keys in KEYS. Logs and the details go to .bench/<timestamp>/.
`--tiny` runs every measurement on a toy size: it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from demo.pipeline import ROOT, Supervisor
from demo.podspecs import LocalStack
from demo.s3server import CREDENTIALS, S3Server

KEYS = ("input_s3_vs_local", "train_s3_vs_local", "workers_2_vs_1", "tensorboard_lag_s", "publish_s3_vs_local",
        "render_s_1", "render_s_64",
        # added with the scaling curve and the summary uploads (issue 13); the keys above keep their meaning
        "input_s3_warm_vs_local", "examples_per_s_1", "examples_per_s_2", "examples_per_s_3",
        "summary_upload_mb_hour_1", "summary_upload_mb_hour_10")
STEPS = ("input", "train", "workers", "tensorboard", "uploads", "publish", "render")
SIZES = {
    # Training figures on an MNIST-sized split (60,000 train / 10,000 test images of random pixels: the real
    # mnist.npz cannot be downloaded here, and throughput does not depend on the pixels), so that per-epoch
    # costs (a checkpoint, the data download) weigh what they weigh in a real job.
    "full": {"input_size": 60000, "input_shards": 4, "input_repeats": 5, "train_images": 60000,
             "train_epochs": 1, "train_repeats": 5, "workers_epochs": 1, "workers_repeats": 3,
             "workers_context_batch": 256, "lag_s": 30.0, "publish_repeats": 5, "render_repeats": 3,
             "upload_rounds_per_hour": 720},
    # The offline digits (1,437 training images) and one pass of everything: checks the script, not the speed.
    "tiny": {"input_size": 512, "input_shards": 2, "input_repeats": 1, "train_images": 0,
             "train_epochs": 1, "train_repeats": 1, "workers_epochs": 1, "workers_repeats": 1,
             "workers_context_batch": 0, "lag_s": 6.0, "publish_repeats": 1, "render_repeats": 1,
             "upload_rounds_per_hour": 24},
}
GOALS = {  # key: (comparison, goal)
    "input_s3_vs_local": (">=", 0.9), "train_s3_vs_local": (">=", 0.95), "workers_2_vs_1": (">=", 1.6),
    "tensorboard_lag_s": ("<=", 10.0), "publish_s3_vs_local": ("<=", 3.0), "render_s_1": ("<=", 2.0),
    "render_s_64": ("<=", 2.0),
    # figures without a goal of their own (context for the ones above)
    "input_s3_warm_vs_local": None, "examples_per_s_1": None, "examples_per_s_2": None, "examples_per_s_3": None,
    "summary_upload_mb_hour_1": None, "summary_upload_mb_hour_10": None,
}
BUCKET = "bench"
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


class Bench:
    def __init__(self, size: dict, out: Path):
        self.size, self.out = size, out
        self.sup = Supervisor(out / "logs")
        self.server: S3Server | None = None
        self.values: dict[str, float | None] = dict.fromkeys(KEYS)
        self.details: dict[str, dict] = {}
        self.rows: list[tuple[str, str]] = []  # (benchmark, what was measured)

    # --- set-up --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.server = S3Server(log_path=str(self.out / "s3-server.log")).start()
        os.environ.update(self.server.env())  # this process's stores (trainer.s3) use the server too
        import boto3

        boto3.client("s3", endpoint_url=self.server.endpoint).create_bucket(Bucket=BUCKET)
        keys = {k: v for k, v in CREDENTIALS.items() if k != "AWS_REGION"}
        self.stack = LocalStack.render({"training.run": "bench"}, self.server.endpoint, keys, self.out)
        self.env = self.stack.prepare_data().env  # the render stage itself (6.) runs with this environment
        self._data_ready = False

    def stop(self) -> None:
        self.sup.stop_all()
        if self.server:
            self.server.stop()
        # Keep the logs and bench.json; the data, caches, runs and models are hundreds of MB.
        for name in ("data", "cache", "runs", "models", "render"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for npz in self.out.glob("*.npz"):
            npz.unlink()

    def data(self) -> tuple[str, str]:
        """The training data, prepared once on S3 by `prepare-data` and copied byte for byte to local disk:
        (s3 URL, file URL)."""
        images = self.size["train_images"]
        name = f"synthetic-{images}" if images else "digits"
        s3_url, local_dir = f"s3://{BUCKET}/data/{name}", self.out / "data" / name
        if not self._data_ready:
            source = "digits"
            if images:
                import numpy as np

                rng = np.random.default_rng(0)
                test = images // 6
                source = str(self.out / f"{name}.npz")
                np.savez(source, x_train=rng.integers(0, 256, (images, 28, 28), dtype=np.uint8),
                         y_train=rng.integers(0, 10, images).astype(np.int64),
                         x_test=rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
                         y_test=rng.integers(0, 10, test).astype(np.int64))
            prep = self.stack.prepare_data().with_args("--source", source).with_env(DATA_URL=s3_url)
            self.sup.wait_all("prepare-data", [self.sup.start(prep.name, prep.cmd, prep.env)], 900)
            from trainer.store import open_store

            remote = open_store(s3_url)
            for key in remote.list():
                remote.get_file(key, local_dir / key)
            self._data_ready = True
        return s3_url, f"file://{local_dir}"

    def data_name(self) -> str:
        images = self.size["train_images"]
        return f"{images:,} random MNIST-sized images" if images else "the offline digits"

    # --- 1. input pipeline ---------------------------------------------------------------------------------

    def input(self) -> None:
        from bench.input_pipeline import measure

        s = self.size
        r = measure(size=s["input_size"], shards=s["input_shards"], repeats=s["input_repeats"],
                    endpoint=self.server.endpoint, workdir=str(self.out))
        self.details["input"] = r
        self.values["input_s3_vs_local"] = r["ratio_cold"]
        self.values["input_s3_warm_vs_local"] = r["ratio_warm"]
        self.rows.append(("1 input pipeline", f"{r['images']} images, {r['megabytes']} MB in {r['shards']} shards: "
                          f"local {r['local_mb_s']} MB/s, S3 {r['s3_cold_mb_s']} MB/s "
                          f"(cached re-read {r['s3_warm_mb_s']} MB/s; a {r['epochs']}-epoch run {r['ratio_run']})"))

    # --- 2. training, all S3 vs all local ------------------------------------------------------------------

    def train(self) -> None:
        """Pairs of runs, local then S3, back to back; the ratio is the median over the pairs (this machine's
        load drifts by tens of percent within minutes: a pair sees about the same load)."""
        s3_data, local_data = self.data()
        epochs = self.size["train_epochs"]
        pairs: list[dict[str, dict]] = []
        for i in range(self.size["train_repeats"]):
            pair = {}
            for where in ("local", "s3"):
                tag = f"{where}-{i}"
                if where == "s3":
                    urls = {"DATA_URL": s3_data, "RUN_URL": f"s3://{BUCKET}/runs/train-{tag}",
                            "MODEL_URL": f"s3://{BUCKET}/models/train-{tag}"}
                else:
                    urls = {"DATA_URL": local_data, "RUN_URL": f"file://{self.out}/runs/train-{tag}",
                            "MODEL_URL": f"file://{self.out}/models/train-{tag}"}
                cache = self.out / "cache" / tag  # empty: the S3 run downloads its shards like a fresh pod
                pair[where] = self.timed_train(f"train-{tag}", ["--epochs", str(epochs)],
                                               DATA_CACHE_DIR=str(cache), **urls)
            pairs.append(pair)
        wall = statistics.median(p["local"]["wall_s"] / p["s3"]["wall_s"] for p in pairs)
        steps = statistics.median(p["s3"]["result"]["examples_per_sec"] / p["local"]["result"]["examples_per_sec"]
                                  for p in pairs)
        self.values["train_s3_vs_local"] = round(wall, 3)
        self.details["train"] = {"epochs": epochs, "pairs": pairs, "wall_ratio": wall, "step_ratio": steps}
        med = {w: statistics.median(p[w]["wall_s"] for p in pairs) for w in ("local", "s3")}
        n = pairs[0]["s3"]["result"]["steps"]
        self.rows.append(("2 training", f"{self.data_name()}, {n} steps, one process, median of {len(pairs)} "
                          f"pairs: whole command local {med['local']:.1f} s, S3 {med['s3']:.1f} s (steps alone: "
                          f"examples/s ratio {steps:.2f})"))

    def timed_train(self, name: str, args: list[str], workers: int = 0, pin: bool = False, **env: str) -> dict:
        """A `train` run (a lone chief, or chief + workers, optionally each pinned to its own CPU): the wall
        time of the whole command and the chief's JSON."""
        replicas = self.stack.train(workers=workers)
        n = len(replicas)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        start = time.monotonic()
        procs = []
        for rank, p in enumerate(replicas):
            p = p.with_args(*args).with_env(**env)
            cmd = p.cmd
            if pin and shutil.which("taskset") and len(cpus) >= n:
                cmd = ["taskset", "-c", str(cpus[rank]), *cmd]
            procs.append(self.sup.start(f"{name}-{p.name.removeprefix('train-')}", cmd, p.env))
        self.sup.wait_all(name, procs, timeout=1800)
        wall = time.monotonic() - start
        result = procs[0].result() or {}
        return {"wall_s": round(wall, 3), "result": result,
                "pinned": bool(pin and shutil.which("taskset") and len(cpus) >= n)}

    # --- 3. workers ----------------------------------------------------------------------------------------

    def workers(self) -> None:
        """Global examples/s of 1, 2 and 3 processes (64 images per process per step, one TF thread each),
        run back to back in each round; workers_2_vs_1 is the median over the rounds of 2 / 1. Two cores: the
        processes are pinned one per core where they fit (1 and 2); 3 processes share the two cores."""
        s3_data, _ = self.data()
        epochs = str(self.size["workers_epochs"])
        pairs: list[dict[str, dict]] = []
        for i in range(self.size["workers_repeats"]):
            pair = {}
            for workers in (0, 1, 2):
                tag = f"workers-{workers + 1}-{i}"
                pair[str(workers + 1)] = self.timed_train(
                    tag, ["--epochs", epochs, "--batch-size", str(64 * (workers + 1))], workers=workers, pin=True,
                    DATA_URL=s3_data, RUN_URL=f"s3://{BUCKET}/runs/{tag}", MODEL_URL=f"s3://{BUCKET}/models/{tag}",
                    DATA_CACHE_DIR=str(self.out / "cache" / "workers"), **ONE_THREAD)
            pairs.append(pair)
        ratio = statistics.median(p["2"]["result"]["examples_per_sec"] / p["1"]["result"]["examples_per_sec"]
                                  for p in pairs)
        curve = {k: statistics.median(p[k]["result"]["examples_per_sec"] for p in pairs) for k in ("1", "2", "3")}
        one, two = curve["1"], curve["2"]
        self.values["workers_2_vs_1"] = round(ratio, 3)
        for k, v in curve.items():
            self.values[f"examples_per_s_{k}"] = round(v, 1)
        self.details["workers"] = {"pairs": pairs, "ratio": ratio, "curve": curve}
        context = ""
        if self.size["workers_context_batch"]:
            # For context, not the figure: one pair with 4x the images per step, so the gradient all-reduce
            # (the same bytes whatever the batch) is spread over 4x the examples.
            big, pair = self.size["workers_context_batch"], {}
            for workers in (0, 1):
                tag = f"workers-{workers + 1}-batch{big}"
                pair[str(workers + 1)] = self.timed_train(
                    tag, ["--epochs", epochs, "--batch-size", str(big * (workers + 1))], workers=workers, pin=True,
                    DATA_URL=s3_data, RUN_URL=f"s3://{BUCKET}/runs/{tag}", MODEL_URL=f"s3://{BUCKET}/models/{tag}",
                    DATA_CACHE_DIR=str(self.out / "cache" / "workers"), **ONE_THREAD)
            big_ratio = pair["2"]["result"]["examples_per_sec"] / pair["1"]["result"]["examples_per_sec"]
            self.details["workers"]["context"] = {"batch_per_process": big, "pair": pair, "ratio": big_ratio}
            context = f"; with {big} images per process per step: {big_ratio:.2f}"
        pinned = ("each pinned to its own core" if pairs[0]["2"]["pinned"]
                  else "NOT pinned (no taskset or < 2 cores)")
        self.rows.append(("3 workers", f"{self.data_name()}, {epochs} epoch(s), 64 images per process per step, "
                          f"1 TF thread each, {pinned}, median of {len(pairs)} rounds: global examples/s "
                          f"1 process {one:.0f}, 2 processes {two:.0f}, 3 processes {curve['3']:.0f} "
                          f"(sharing 2 cores){context}"))

    # --- 4. TensorBoard lag --------------------------------------------------------------------------------

    def tensorboard(self) -> None:
        """Writes a scalar every 0.1 s (like the training loop) through the trainer's `Summaries` to S3, and
        polls the event files on S3 like TensorBoard's loader; lag = first seen on S3 - written."""
        from trainer.store import open_store
        from trainer.summaries import Summaries

        store = open_store(f"s3://{BUCKET}/runs/lag/logs/chief-0")
        interval = 5.0  # the trainer's default --summary-secs
        logs = Summaries(store, interval=interval)
        written: dict[int, float] = {}
        seen: dict[int, float] = {}
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                for key in store.list():
                    for step in _event_steps(store.get_bytes(key)):
                        seen.setdefault(step, time.monotonic())
                stop.wait(0.25)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        step, end = 0, time.monotonic() + self.size["lag_s"]
        try:
            while time.monotonic() < end:
                step += 1
                logs.scalars(step, {"loss": 1.0 / step})
                written[step] = time.monotonic()
                time.sleep(0.1)
            # Only scalars the periodic sync brought up count; close()'s final upload would flatter the lag.
            time.sleep(interval * 1.5 + 1)
        finally:
            stop.set()
            poller.join(timeout=30)
            logs.close()
        lags = sorted(seen[s] - written[s] for s in written if s in seen)
        if not lags:
            raise RuntimeError(f"no scalar became readable on S3 within {self.size['lag_s']:.0f} s")
        self.values["tensorboard_lag_s"] = round(lags[-1], 2)
        self.details["tensorboard"] = {"written": len(written), "seen": len(lags), "max_s": lags[-1],
                                       "median_s": statistics.median(lags), "sync_interval_s": interval}
        self.rows.append(("4 TensorBoard lag", f"{len(written)} scalars over {self.size['lag_s']:.0f} s, "
                          f"sync every {interval:.0f} s: median {statistics.median(lags):.1f} s, "
                          f"worst {lags[-1]:.1f} s ({len(lags)} seen before the final upload)"))

    # --- 4b. summary uploads over a long run ---------------------------------------------------------------

    def uploads(self) -> None:
        """Bytes the trainer's `Summaries` uploads in the 1st and the 10th hour of a simulated 10-hour run: a
        sync round every 5 simulated seconds (`--summary-secs`), and between rounds the event bytes a
        one-process digits run writes (about 38 bytes per step, 10 MB per hour on this machine), as one event
        per round. The clock is simulated, the writer, the rolls and the uploads are real; hours 1 and 10 upload
        to the embedded S3 server, hours 2-9 to a local folder (the same bytes, counted; it saves time)."""
        import tensorflow as tf

        from trainer.store import open_store
        from trainer.summaries import Summaries

        rounds, interval, rate = self.size["upload_rounds_per_hour"], 5.0, 10e6  # bytes of events per hour
        hours = 10
        per_round = int(rate / 720)  # the same bytes per 5-s round, whatever the number of rounds per hour
        s3_store = open_store(f"s3://{BUCKET}/runs/uploads/logs/chief-0")
        local_store = open_store(f"file://{self.out}/runs/uploads/logs/chief-0")
        clock = {"now": 0.0}
        logs = Summaries(s3_store, interval=interval, clock=lambda: clock["now"], background=False,
                         min_roll_gap=0)
        filler = tf.zeros([max(1, (per_round - 60) // 4)], tf.float32)  # one tensor event of ~per_round bytes
        by_hour, step, started = [], 0, time.monotonic()
        try:
            for hour in range(1, hours + 1):
                logs.sync.store = s3_store if hour in (1, hours) else local_store
                before = logs.sync.uploaded_bytes
                for _ in range(rounds):
                    step += 1
                    logs.scalars(step, {"loss": 1.0 / step})
                    with logs.writer.as_default(step=step):
                        tf.summary.write("filler", filler)
                    clock["now"] += interval
                    logs.sync.round()
                by_hour.append(logs.sync.uploaded_bytes - before)
        finally:
            logs.close()
        written = per_round * rounds
        self.values["summary_upload_mb_hour_1"] = round(by_hour[0] / 1e6, 2)
        self.values["summary_upload_mb_hour_10"] = round(by_hour[-1] / 1e6, 2)
        self.details["uploads"] = {"bytes_by_hour": by_hour, "event_bytes_per_hour": written,
                                   "rounds_per_hour": rounds, "rolls": logs.rolls,
                                   "seconds": time.monotonic() - started}
        self.rows.append(("4b summary uploads", f"{hours} simulated hours, {written / 1e6:.1f} MB of events an hour, "
                          f"a sync every {interval:.0f} s, {logs.rolls} rolls: uploaded "
                          f"{by_hour[0] / 1e6:.1f} MB in hour 1, {by_hour[-1] / 1e6:.1f} MB in hour {hours}"))

    # --- 5. publish ----------------------------------------------------------------------------------------

    def publish(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from trainer import model, publish
        from trainer.store import open_store

        net = model.build(0)
        tmp = Path(tempfile.mkdtemp(prefix="export-", dir=self.out))
        model.export(net, tmp / "warm-up")  # tracing and first-save costs, outside both timings
        local, local_pub, s3 = [], [], []
        for i in range(self.size["publish_repeats"]):
            t = time.perf_counter()
            model.export(net, tmp / f"local-{i}")
            local.append(time.perf_counter() - t)

            t = time.perf_counter()
            model.export(net, tmp / f"lp-{i}")
            publish.publish_dir(tmp / f"lp-{i}", open_store(f"file://{self.out}/models/publish/{i + 1}"))
            local_pub.append(time.perf_counter() - t)

            t = time.perf_counter()
            model.export(net, tmp / f"s3-{i}")
            publish.publish_dir(tmp / f"s3-{i}", open_store(f"s3://{BUCKET}/models/publish/{i + 1}"))
            s3.append(time.perf_counter() - t)
        size = sum(p.stat().st_size for p in (tmp / "s3-0").rglob("*") if p.is_file())
        shutil.rmtree(tmp, ignore_errors=True)
        ml, mlp, ms = (statistics.median(x) for x in (local, local_pub, s3))
        self.values["publish_s3_vs_local"] = round(ms / ml, 3)
        self.details["publish"] = {"export_local_s": local, "export_publish_local_s": local_pub,
                                   "export_publish_s3_s": s3, "bytes": size}
        self.rows.append(("5 publish", f"SavedModel of {size / 1e6:.1f} MB: export {ml:.2f} s; export + publish "
                          f"to S3 {ms:.2f} s (to a file:/// store {mlp:.2f} s)"))

    # --- 6. render -----------------------------------------------------------------------------------------

    def render(self) -> None:
        times = {}
        for workers in (1, 64):
            runs = []
            for i in range(self.size["render_repeats"]):
                out = self.out / "render" / f"w{workers}-{i}"
                t = time.monotonic()
                self.sup.run("render", f"render-w{workers}-{i}", [
                    sys.executable, "-m", "render", "--stack", "dev", "--out", str(out),
                    "--set", f"workers={workers}",
                    "--set", f"training.batchSize={max(64, 2 * (workers + 1))}"], dict(self.env), timeout=300)
                runs.append(time.monotonic() - t)
            times[workers] = statistics.median(runs)
        self.values["render_s_1"] = round(times[1], 3)
        self.values["render_s_64"] = round(times[64], 3)
        self.details["render"] = times
        self.rows.append(("6 render", f"python -m render --stack dev (whole command, median of "
                          f"{self.size['render_repeats']}): 1 worker {times[1]:.2f} s, 64 workers {times[64]:.2f} s"))


def _event_steps(raw: bytes) -> set[int]:
    """Steps of the scalar events in a TF event file (TFRecord framing; a torn last record is ignored)."""
    from tensorboard.compat.proto import event_pb2

    steps, pos = set(), 0
    while pos + 12 <= len(raw):
        (length,) = struct.unpack_from("<Q", raw, pos)
        end = pos + 12 + length + 4
        if end > len(raw):
            break
        event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + length])
        if event.HasField("summary") and event.summary.value:
            steps.add(event.step)
        pos = end
    return steps


STEP_OF = {"input_s3_vs_local": "input", "train_s3_vs_local": "train", "workers_2_vs_1": "workers",
           "tensorboard_lag_s": "tensorboard", "publish_s3_vs_local": "publish", "render_s_1": "render",
           "render_s_64": "render", "input_s3_warm_vs_local": "input", "examples_per_s_1": "workers",
           "examples_per_s_2": "workers", "examples_per_s_3": "workers", "summary_upload_mb_hour_1": "uploads",
           "summary_upload_mb_hour_10": "uploads"}


def _met(key: str, value, chosen) -> str:
    if value is None:
        return "failed" if STEP_OF[key] in chosen else "skipped"
    if GOALS[key] is None:
        return ""
    op, goal = GOALS[key]
    ok = value >= goal if op == ">=" else value <= goal
    return "yes" if ok else "NO"


def table(bench: Bench, chosen) -> str:
    lines = [f"{'key':<26} {'value':>8}  {'goal':<8} {'met':<6}"]
    for key in KEYS:
        v = bench.values[key]
        op, goal = GOALS[key] or ("", "")
        lines.append(f"{key:<26} {('-' if v is None else f'{v:g}'):>8}  {op:>2} {goal:<5} {_met(key, v, chosen):<6}")
    lines.append("")
    lines.extend(f"{name:<18} {what}" for name, what in bench.rows)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks that it runs, not the speed")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--out", help="folder for logs and details (default: .bench/<timestamp>)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}: pick from {','.join(STEPS)}")
    out = Path(args.out or ROOT / ".bench" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bench = Bench(SIZES["tiny" if args.tiny else "full"], out)
    failed = []
    t0 = time.monotonic()
    try:
        bench.start()
        for step in STEPS:
            if step not in chosen:
                continue
            t = time.monotonic()
            print(f"[{step}] ...", flush=True)
            try:
                getattr(bench, step)()
                print(f"[{step}] done in {time.monotonic() - t:.1f} s", flush=True)
            except Exception as e:
                failed.append(step)
                (out / f"{step}.error.txt").write_text(traceback.format_exc())
                print(f"[{step}] FAILED after {time.monotonic() - t:.1f} s: {e} (see {out / (step + '.error.txt')})",
                      flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.stop()
    (out / "bench.json").write_text(json.dumps({"values": bench.values, "details": bench.details,
                                                "size": "tiny" if args.tiny else "full"}, indent=1, default=str))
    print()
    print(f"python -m bench{' --tiny' if args.tiny else ''}: {time.monotonic() - t0:.0f} s, "
          f"{os.cpu_count()} CPUs; details in {out}")
    print(table(bench, chosen))
    print(json.dumps({k: bench.values[k] for k in KEYS}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
