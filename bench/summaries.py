"""Benchmarks 4 and 4b: how soon a scalar the trainer writes is readable on S3 (TensorBoard's lag), and how
many bytes the summary writer uploads per hour over a long run."""

from __future__ import annotations

import statistics
import struct
import threading
import time

from bench.harness import BUCKET, Bench


def tensorboard(b: Bench) -> None:
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
    step, end = 0, time.monotonic() + b.size["lag_s"]
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
        raise RuntimeError(f"no scalar became readable on S3 within {b.size['lag_s']:.0f} s")
    b.values["tensorboard_lag_s"] = round(lags[-1], 2)
    b.details["tensorboard"] = {"written": len(written), "seen": len(lags), "max_s": lags[-1],
                                "median_s": statistics.median(lags), "sync_interval_s": interval}
    b.rows.append(("4 TensorBoard lag", f"{len(written)} scalars over {b.size['lag_s']:.0f} s, "
                   f"sync every {interval:.0f} s: median {statistics.median(lags):.1f} s, "
                   f"worst {lags[-1]:.1f} s ({len(lags)} seen before the final upload)"))


def uploads(b: Bench) -> None:
    """Bytes the trainer's `Summaries` uploads in the 1st and the 10th hour of a simulated 10-hour run: a
    sync round every 5 simulated seconds (`--summary-secs`), and between rounds the event bytes a
    one-process digits run writes (about 38 bytes per step, 10 MB per hour on this machine), as one event
    per round. The clock is simulated, the writer, the rolls and the uploads are real; hours 1 and 10 upload
    to the embedded S3 server, hours 2-9 to a local folder (the same bytes, counted; it saves time)."""
    import tensorflow as tf

    from trainer.store import open_store
    from trainer.summaries import Summaries

    rounds, interval, rate = b.size["upload_rounds_per_hour"], 5.0, 10e6  # bytes of events per hour
    hours = 10
    per_round = int(rate / 720)  # the same bytes per 5-s round, whatever the number of rounds per hour
    s3_store = open_store(f"s3://{BUCKET}/runs/uploads/logs/chief-0")
    local_store = open_store(f"file://{b.out}/runs/uploads/logs/chief-0")
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
    b.values["summary_upload_mb_hour_1"] = round(by_hour[0] / 1e6, 2)
    b.values["summary_upload_mb_hour_10"] = round(by_hour[-1] / 1e6, 2)
    b.details["uploads"] = {"bytes_by_hour": by_hour, "event_bytes_per_hour": written,
                            "rounds_per_hour": rounds, "rolls": logs.rolls,
                            "seconds": time.monotonic() - started}
    b.rows.append(("4b summary uploads", f"{hours} simulated hours, {written / 1e6:.1f} MB of events an hour, "
                   f"a sync every {interval:.0f} s, {logs.rolls} rolls: uploaded "
                   f"{by_hour[0] / 1e6:.1f} MB in hour 1, {by_hour[-1] / 1e6:.1f} MB in hour {hours}"))


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
