"""Benchmarks 2 and 3: `train` with everything on S3 vs everything local, and the scaling over 1, 2 and 3
processes."""

from __future__ import annotations

import statistics

from bench.harness import BUCKET, ONE_THREAD, Bench


def train(b: Bench) -> None:
    """Pairs of runs, local then S3, back to back; the ratio is the median over the pairs (this machine's
    load drifts by tens of percent within minutes: a pair sees about the same load)."""
    s3_data, local_data = b.data()
    epochs = b.size["train_epochs"]
    pairs: list[dict[str, dict]] = []
    for i in range(b.size["train_repeats"]):
        pair = {}
        for where in ("local", "s3"):
            tag = f"{where}-{i}"
            if where == "s3":
                urls = {"DATA_URL": s3_data, "RUN_URL": f"s3://{BUCKET}/runs/train-{tag}",
                        "MODEL_URL": f"s3://{BUCKET}/models/train-{tag}"}
            else:
                urls = {"DATA_URL": local_data, "RUN_URL": f"file://{b.out}/runs/train-{tag}",
                        "MODEL_URL": f"file://{b.out}/models/train-{tag}"}
            cache = b.out / "cache" / tag  # empty: the S3 run downloads its shards like a fresh pod
            pair[where] = b.timed_train(f"train-{tag}", ["--epochs", str(epochs)],
                                        DATA_CACHE_DIR=str(cache), **urls)
        pairs.append(pair)
    wall = statistics.median(p["local"]["wall_s"] / p["s3"]["wall_s"] for p in pairs)
    steps = statistics.median(p["s3"]["result"]["examples_per_sec"] / p["local"]["result"]["examples_per_sec"]
                              for p in pairs)
    b.values["train_s3_vs_local"] = round(wall, 3)
    b.details["train"] = {"epochs": epochs, "pairs": pairs, "wall_ratio": wall, "step_ratio": steps}
    med = {w: statistics.median(p[w]["wall_s"] for p in pairs) for w in ("local", "s3")}
    n = pairs[0]["s3"]["result"]["steps"]
    b.rows.append(("2 training", f"{b.data_name()}, {n} steps, one process, median of {len(pairs)} "
                   f"pairs: whole command local {med['local']:.1f} s, S3 {med['s3']:.1f} s (steps alone: "
                   f"examples/s ratio {steps:.2f})"))


def workers(b: Bench) -> None:
    """Global examples/s of 1, 2 and 3 processes (64 images per process per step, one TF thread each),
    run back to back in each round; workers_2_vs_1 is the median over the rounds of 2 / 1. Two cores: the
    processes are pinned one per core where they fit (1 and 2); 3 processes share the two cores."""
    s3_data, _ = b.data()
    epochs = str(b.size["workers_epochs"])
    pairs: list[dict[str, dict]] = []
    for i in range(b.size["workers_repeats"]):
        pair = {}
        for workers in (0, 1, 2):
            tag = f"workers-{workers + 1}-{i}"
            pair[str(workers + 1)] = b.timed_train(
                tag, ["--epochs", epochs, "--batch-size", str(64 * (workers + 1))], workers=workers, pin=True,
                DATA_URL=s3_data, RUN_URL=f"s3://{BUCKET}/runs/{tag}", MODEL_URL=f"s3://{BUCKET}/models/{tag}",
                DATA_CACHE_DIR=str(b.out / "cache" / "workers"), **ONE_THREAD)
        pairs.append(pair)
    ratio = statistics.median(p["2"]["result"]["examples_per_sec"] / p["1"]["result"]["examples_per_sec"]
                              for p in pairs)
    curve = {k: statistics.median(p[k]["result"]["examples_per_sec"] for p in pairs) for k in ("1", "2", "3")}
    one, two = curve["1"], curve["2"]
    b.values["workers_2_vs_1"] = round(ratio, 3)
    for k, v in curve.items():
        b.values[f"examples_per_s_{k}"] = round(v, 1)
    b.details["workers"] = {"pairs": pairs, "ratio": ratio, "curve": curve}
    context = ""
    if b.size["workers_context_batch"]:
        # For context, not the figure: one pair with 4x the images per step, so the gradient all-reduce
        # (the same bytes whatever the batch) is spread over 4x the examples.
        big, pair = b.size["workers_context_batch"], {}
        for workers in (0, 1):
            tag = f"workers-{workers + 1}-batch{big}"
            pair[str(workers + 1)] = b.timed_train(
                tag, ["--epochs", epochs, "--batch-size", str(big * (workers + 1))], workers=workers, pin=True,
                DATA_URL=s3_data, RUN_URL=f"s3://{BUCKET}/runs/{tag}", MODEL_URL=f"s3://{BUCKET}/models/{tag}",
                DATA_CACHE_DIR=str(b.out / "cache" / "workers"), **ONE_THREAD)
        big_ratio = pair["2"]["result"]["examples_per_sec"] / pair["1"]["result"]["examples_per_sec"]
        b.details["workers"]["context"] = {"batch_per_process": big, "pair": pair, "ratio": big_ratio}
        context = f"; with {big} images per process per step: {big_ratio:.2f}"
    pinned = ("each pinned to its own core" if pairs[0]["2"]["pinned"]
              else "NOT pinned (no taskset or < 2 cores)")
    b.rows.append(("3 workers", f"{b.data_name()}, {epochs} epoch(s), 64 images per process per step, "
                   f"1 TF thread each, {pinned}, median of {len(pairs)} rounds: global examples/s "
                   f"1 process {one:.0f}, 2 processes {two:.0f}, 3 processes {curve['3']:.0f} "
                   f"(sharing 2 cores){context}"))


def keras_fit(b: Bench) -> None:
    """Our `train` against a plain Keras `model.fit` of the same model (bench/keras_fit.py): one process each,
    the same shards from local disk, the same batch size and steps, back to back in each round, with the
    dev stack's environment; trainer_vs_keras_fit is the median over the rounds of ours / fit's examples/s.
    `train` runs without augmentation here (the fit has none), with its stores on local disk."""
    _, local_data = b.data()
    epochs = str(b.size["keras_epochs"])
    rounds: list[dict[str, dict]] = []
    for i in range(b.size["keras_repeats"]):
        tag = f"keras-{i}"
        ours = b.timed_train(f"ours-{tag}", ["--epochs", epochs, "--shift", "0", "--rotate", "0", "--scale", "0"],
                             DATA_URL=local_data, RUN_URL=f"file://{b.out}/runs/{tag}",
                             MODEL_URL=f"file://{b.out}/models/{tag}")
        fit = b.timed_module(f"fit-{tag}", "bench.keras_fit", ["--data-url", local_data, "--epochs", epochs])
        rounds.append({"trainer": ours, "keras_fit": fit})
    ratio = statistics.median(r["trainer"]["result"]["examples_per_sec"] / r["keras_fit"]["result"]["examples_per_sec"]
                              for r in rounds)
    b.values["trainer_vs_keras_fit"] = round(ratio, 3)
    med = {k: statistics.median(r[k]["result"]["examples_per_sec"] for r in rounds) for k in ("trainer", "keras_fit")}
    b.details["keras"] = {"rounds": rounds, "ratio": ratio, "median_examples_per_sec": med}
    fit = rounds[0]["keras_fit"]["result"]
    b.rows.append(("7 vs Keras fit", f"{b.data_name()}, {fit['steps']} steps of {fit['batch_size']}, one process, "
                   f"local disk, no augmentation, median of {len(rounds)} rounds: train {med['trainer']:.0f} "
                   f"examples/s, model.fit {med['keras_fit']:.0f} (jit_compile {fit['jit_compile']})"))
