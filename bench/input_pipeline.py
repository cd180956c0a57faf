"""Input-pipeline benchmark: the training split read from S3 through the trainer's data path, against the
same shard files read from local disk with tf.data.

    python -m bench.input_pipeline [--size 60000] [--shards 8] [--repeats 3]

Starts the embedded S3 server (demo/s3server.py, moto on 127.0.0.1) unless --endpoint is given, writes an
MNIST-sized synthetic training split (random 28x28 uint8 images: the TFRecords have MNIST's exact size, ~50 MB
for 60,000 images) once, and uploads the very same shard files to S3. Then it times one full pass over the
split, consumed in batches of 256:

  local   tf.data over the local shard files (the trainer's parse pipeline, no download, no checks)
  cold    trainer.data.dataset() on the S3 store with an empty cache: manifest, parallel shard downloads,
          sha256 checks, then the same tf.data pipeline
  warm    the same with the shard cache already filled (every later epoch or a restarted worker)

ratio_cold = local_time / cold_time, ratio_warm = local_time / warm_time (1.0 = as fast as local disk), and
ratio_run = the ratio over a run of --epochs epochs (one cold pass then warm ones). Each round runs local,
cold, warm, local; ratios are per round (the mean of its two local passes), medians over --repeats rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only python -m bench passes one; this module also runs on its own
    from bench.harness import Bench

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _consume(ds) -> int:
    import tensorflow as tf

    return int(ds.batch(256).reduce(np.int64(0), lambda n, b: n + tf.shape(b[1], out_type=tf.int64)[0]))


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used so far, from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(size: int = 60000, shards: int = 8, repeats: int = 3, epochs: int = 5,
            endpoint: str | None = None, workdir=None, server_pid: int | None = None) -> dict:
    """Times local vs S3 reads of a `size`-image training split; returns the timings and ratios. With the S3
    server's process id (the embedded server's is known), also the CPU its process used during the cold
    passes, against the reading process's own."""
    from demo.s3server import S3Server
    from trainer import data
    from trainer.prepare import prepare
    from trainer.store import open_store

    server = None
    if endpoint is None:
        server = S3Server().start()
        os.environ.update(server.env())
        server_pid = server.proc.pid
    else:
        os.environ["S3_ENDPOINT"] = endpoint
    root = Path(tempfile.mkdtemp(prefix="bench-input-", dir=workdir))
    try:
        rng = np.random.default_rng(0)
        test = max(1, size // 6)
        arrays = {"x_train": rng.integers(0, 256, (size, 28, 28), dtype=np.uint8),
                  "y_train": rng.integers(0, 10, size).astype(np.int64),
                  "x_test": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
                  "y_test": rng.integers(0, 10, test).astype(np.int64)}
        np.savez(root / "source.npz", **arrays)
        local = open_store(f"file://{root}/local")
        manifest = prepare(str(root / "source.npz"), local, shards)

        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"]).create_bucket(Bucket=bucket)
        remote = open_store(f"s3://{bucket}/data/mnist")
        for key in local.list():  # the very same files; manifest last
            if key != data.MANIFEST:
                remote.put_file(key, local.local_path(key))
        remote.put_file(data.MANIFEST, local.local_path(data.MANIFEST))

        entries = manifest["splits"]["train"]["shards"]
        paths = [local.local_path(e["name"]) for e in entries]
        nbytes = sum(e["size"] for e in entries)

        def local_pass() -> float:
            start = time.perf_counter()
            assert _consume(data.read_files(paths)) == size
            return time.perf_counter() - start

        cpu = {"server_s": 0.0, "reader_s": 0.0}

        def s3_pass(cache: Path, cold: bool = False) -> float:
            server_before = process_cpu_s(server_pid) if server_pid else None
            reader_before = time.process_time()
            start = time.perf_counter()
            ds, count = data.dataset(remote, "train", cache_dir=cache)
            assert _consume(ds) == count == size
            took = time.perf_counter() - start
            server_after = process_cpu_s(server_pid) if server_pid else None
            if cold and server_before is not None and server_after is not None:
                cpu["server_s"] += server_after - server_before
                cpu["reader_s"] += time.process_time() - reader_before
            return took

        local_pass()  # warm the page cache and TF's one-time setup for both sides
        local_t, cold_t, warm_t, cold_r, warm_r = [], [], [], [], []
        for i in range(repeats):
            # Local passes right before and after the S3 ones, and ratios taken per round: on a shared
            # machine, load drifts between rounds but hardly within one.
            cache = root / f"cache-{i}"
            before = local_pass()
            cold, warm = s3_pass(cache, cold=True), s3_pass(cache)
            local = (before + local_pass()) / 2
            shutil.rmtree(cache)
            local_t.append(local), cold_t.append(cold), warm_t.append(warm)
            cold_r.append(local / cold), warm_r.append(local / warm)
        lt, ct, wt = (statistics.median(t) for t in (local_t, cold_t, warm_t))
        rc, rw = statistics.median(cold_r), statistics.median(warm_r)
        return {
            "images": size,
            "shards": shards,
            "megabytes": round(nbytes / 1e6, 1),
            "local_s": round(lt, 3),
            "s3_cold_s": round(ct, 3),
            "s3_warm_s": round(wt, 3),
            "local_mb_s": round(nbytes / 1e6 / lt, 1),
            "s3_cold_mb_s": round(nbytes / 1e6 / ct, 1),
            "s3_warm_mb_s": round(nbytes / 1e6 / wt, 1),
            "ratio_cold": round(rc, 3),
            "ratio_warm": round(rw, 3),
            "epochs": epochs,
            "ratio_run": round(epochs / (1 / rc + (epochs - 1) / rw), 3),
            "repeats": repeats,
            "endpoint": "embedded moto on 127.0.0.1" if server else endpoint,
            # The S3 server's CPU over the cold passes, as a share of all the CPU they took (server + reader),
            # and per pass in core-seconds: on a machine of few cores, what the server takes the reader lacks.
            "server_cpu_share": (round(cpu["server_s"] / (cpu["server_s"] + cpu["reader_s"]), 3)
                                 if cpu["server_s"] + cpu["reader_s"] > 0 else None),
            "server_cpu_s_per_pass": round(cpu["server_s"] / repeats, 3) if server_pid else None,
            "reader_cpu_s_per_pass": round(cpu["reader_s"] / repeats, 3) if server_pid else None,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if server:
            server.stop()


def _measure(b: Bench) -> dict:
    s = b.size
    return measure(size=s["input_size"], shards=s["input_shards"], repeats=s["input_repeats"],
                   endpoint=b.server.endpoint, workdir=str(b.out), server_pid=b.server.proc.pid)


def step(b: Bench) -> None:
    """`python -m bench`'s step 1: `measure` at the run's size, on its S3 server (the first of the run's three
    cold-read measurements: `again` takes the other two later in the run)."""
    r = _measure(b)
    b.details["input"] = r
    b.details["input_cold_reads"] = [r]
    b.values["input_s3_vs_local"] = r["ratio_cold"]
    b.values["input_s3_warm_vs_local"] = r["ratio_warm"]
    b.rows.append(("1 input pipeline", f"{r['images']} images, {r['megabytes']} MB in {r['shards']} shards: "
                   f"local {r['local_mb_s']} MB/s, S3 {r['s3_cold_mb_s']} MB/s "
                   f"(cached re-read {r['s3_warm_mb_s']} MB/s; a {r['epochs']}-epoch run {r['ratio_run']})"))
    _median3(b)


def again(b: Bench) -> None:
    """One more cold-read measurement, taken later in the run than the first (the load on a shared machine
    drifts over minutes): `input_s3_vs_local_median3` is the median of three."""
    b.details.setdefault("input_cold_reads", []).append(_measure(b))
    _median3(b)


def _median3(b: Bench) -> None:
    reads = b.details["input_cold_reads"]
    if len(reads) < 3:
        return
    ratios = [r["ratio_cold"] for r in reads]
    shares = [r["server_cpu_share"] for r in reads if r["server_cpu_share"] is not None]
    b.values["input_s3_vs_local_median3"] = round(statistics.median(ratios), 3)
    b.values["input_s3_server_cpu_share"] = round(statistics.median(shares), 3) if shares else None
    per_pass = statistics.median(r["server_cpu_s_per_pass"] or 0 for r in reads)
    b.rows.append(("1b cold reads x3", f"three measurements spread over the run, cold / local {ratios}: median "
                   f"{b.values['input_s3_vs_local_median3']}; the S3 server's share of the cold passes' CPU "
                   f"{b.values['input_s3_server_cpu_share']} ({per_pass:.3f} core-s a pass)"))


def main(argv=None) -> None:
    summary = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m bench.input_pipeline", description=summary)
    parser.add_argument("--size", type=int, default=60000, help="training images (default: 60000, MNIST)")
    parser.add_argument("--shards", type=int, default=8, help="TFRecord files (default: 8)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of each kind; medians (default: 3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs for ratio_run (default: 5)")
    parser.add_argument("--endpoint", help="an S3 endpoint URL to use instead of the embedded server")
    args = parser.parse_args(argv)
    result = measure(args.size, args.shards, args.repeats, args.epochs, args.endpoint)
    print(f"local {result['local_mb_s']} MB/s, S3 cold {result['s3_cold_mb_s']} MB/s, "
          f"S3 warm {result['s3_warm_mb_s']} MB/s; ratio cold {result['ratio_cold']}, "
          f"warm {result['ratio_warm']}, {result['epochs']}-epoch run {result['ratio_run']}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
