"""Benchmark 5: a SavedModel exported and published as a model version to S3 vs exported locally."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import BUCKET, Bench


def publish(b: Bench) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from trainer import model
    from trainer.publish import publish_dir
    from trainer.store import open_store

    net = model.build(0)
    tmp = Path(tempfile.mkdtemp(prefix="export-", dir=b.out))
    model.export(net, tmp / "warm-up")  # tracing and first-save costs, outside both timings
    local, local_pub, s3 = [], [], []
    for i in range(b.size["publish_repeats"]):
        t = time.perf_counter()
        model.export(net, tmp / f"local-{i}")
        local.append(time.perf_counter() - t)

        t = time.perf_counter()
        model.export(net, tmp / f"lp-{i}")
        publish_dir(tmp / f"lp-{i}", open_store(f"file://{b.out}/models/publish/{i + 1}"))
        local_pub.append(time.perf_counter() - t)

        t = time.perf_counter()
        model.export(net, tmp / f"s3-{i}")
        publish_dir(tmp / f"s3-{i}", open_store(f"s3://{BUCKET}/models/publish/{i + 1}"))
        s3.append(time.perf_counter() - t)
    size = sum(p.stat().st_size for p in (tmp / "s3-0").rglob("*") if p.is_file())
    shutil.rmtree(tmp, ignore_errors=True)
    ml, mlp, ms = (statistics.median(x) for x in (local, local_pub, s3))
    b.values["publish_s3_vs_local"] = round(ms / ml, 3)
    b.details["publish"] = {"export_local_s": local, "export_publish_local_s": local_pub,
                            "export_publish_s3_s": s3, "bytes": size}
    b.rows.append(("5 publish", f"SavedModel of {size / 1e6:.1f} MB: export {ml:.2f} s; export + publish "
                   f"to S3 {ms:.2f} s (to a file:/// store {mlp:.2f} s)"))
