"""`python -m bench` (`make bench`): each figure a ratio measured side by side in one run on the same data
(S3 on the embedded server vs local disk, two processes vs one, ours vs plain Keras), printed as a table and,
as the last line, one JSON object with the keys in `KEYS`; logs and details go to `.bench/<timestamp>/`.

    python -m bench [--tiny] [--only input,train,workers,tensorboard,uploads,publish,render,tbruns,keras]

`--tiny` runs every measurement at a toy size: it checks the script, not the speed. Each step is a function
of its own module (`RUNS`) over the shared set-up in harness.py, with its goal in `GOALS`. What each figure
measures and why: docs/performance.md, "What each line measures".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from bench import input_pipeline, publish, render_time, summaries, tensorboard_runs, training
from bench.harness import KEYS, Bench
from demo.supervisor import ROOT

STEPS = ("input", "train", "workers", "tensorboard", "uploads", "publish", "render", "tbruns", "keras")
SIZES = {
    # Training figures on an MNIST-sized split (60,000 train / 10,000 test images of random pixels: the real
    # mnist.npz cannot be downloaded here, and throughput does not depend on the pixels), so that per-epoch
    # costs (a checkpoint, the data download) weigh what they weigh in a real job.
    "full": {"input_size": 60000, "input_shards": 4, "input_repeats": 5, "train_images": 60000,
             "train_epochs": 1, "train_repeats": 5, "workers_epochs": 1, "workers_repeats": 3,
             "workers_context_batch": 256, "lag_s": 30.0, "publish_repeats": 5, "render_repeats": 3,
             "upload_rounds_per_hour": 720, "tb_runs": (10, 100, 200), "tb_timeout_s": 1800.0,
             "keras_epochs": 1, "keras_repeats": 3},
    # The offline digits (1,437 training images) and one pass of everything: checks the script, not the speed.
    "tiny": {"input_size": 512, "input_shards": 2, "input_repeats": 1, "train_images": 0,
             "train_epochs": 1, "train_repeats": 1, "workers_epochs": 1, "workers_repeats": 1,
             "workers_context_batch": 0, "lag_s": 6.0, "publish_repeats": 1, "render_repeats": 1,
             "upload_rounds_per_hour": 24, "tb_runs": (2, 4), "tb_timeout_s": 120.0,
             "keras_epochs": 1, "keras_repeats": 1},
}
GOALS = {  # key: (comparison, goal)
    "input_s3_vs_local": (">=", 0.9), "train_s3_vs_local": (">=", 0.95), "workers_2_vs_1": (">=", 1.6),
    "tensorboard_lag_s": ("<=", 10.0), "publish_s3_vs_local": ("<=", 3.0), "render_s_1": ("<=", 2.0),
    "render_s_64": ("<=", 2.0),
    # figures without a goal of their own (context for the ones above)
    "input_s3_warm_vs_local": None, "examples_per_s_1": None, "examples_per_s_2": None, "examples_per_s_3": None,
    "summary_upload_mb_hour_1": None, "summary_upload_mb_hour_10": None,
    "trainer_vs_keras_fit": (">=", 1.0), "input_s3_vs_local_median3": (">=", 0.9), "input_s3_server_cpu_share": None,
}
RUNS = {"input": input_pipeline.step, "train": training.train, "workers": training.workers,
        "tensorboard": summaries.tensorboard, "uploads": summaries.uploads, "publish": publish.publish,
        "render": render_time.render, "tbruns": tensorboard_runs.runs, "keras": training.keras_fit}


STEP_OF = {"input_s3_vs_local": "input", "train_s3_vs_local": "train", "workers_2_vs_1": "workers",
           "tensorboard_lag_s": "tensorboard", "publish_s3_vs_local": "publish", "render_s_1": "render",
           "render_s_64": "render", "input_s3_warm_vs_local": "input", "examples_per_s_1": "workers",
           "examples_per_s_2": "workers", "examples_per_s_3": "workers", "summary_upload_mb_hour_1": "uploads",
           "summary_upload_mb_hour_10": "uploads", "trainer_vs_keras_fit": "keras",
           "input_s3_vs_local_median3": "input", "input_s3_server_cpu_share": "input"}


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
    order = [s for s in STEPS if s in chosen]
    # The cold read's second and third measurements: after the middle step and after the last (with --only
    # input, straight after the first).
    again_after = [order[len(order) // 2], order[-1]] if "input" in order else []
    try:
        bench.start()
        for step in order:
            for name, run in [(step, RUNS[step])] + [("input-again", input_pipeline.again)] * again_after.count(step):
                if name == "input-again" and "input" in failed:
                    continue
                t = time.monotonic()
                print(f"[{name}] ...", flush=True)
                try:
                    run(bench)
                    print(f"[{name}] done in {time.monotonic() - t:.1f} s", flush=True)
                except Exception as e:
                    failed.append(name)
                    (out / f"{name}.error.txt").write_text(traceback.format_exc())
                    print(f"[{name}] FAILED after {time.monotonic() - t:.1f} s: {e} "
                          f"(see {out / (name + '.error.txt')})", flush=True)
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
