"""`python -m bench.gpu`: the default model's training throughput on the CPU and on the GPU, at each
precision, with and without XLA, in one process; prints one JSON line.

    python -m bench.gpu [--cpu-only] [--epochs 10] [--batch-size 64]

Each configuration trains a fresh model (the trainer's `model.build`, its optimizer and its step function,
10 steps per call) on the offline digits (1,437 training images, held in memory, shuffled and batched by
tf.data; no augmentation) for `--epochs` epochs, then scores it on the 360 test images. examples/s leaves
out the first call, which traces and, with XLA, compiles. Configurations that fail (a GPU without bfloat16,
XLA missing) are reported with their error instead of a figure, and the run goes on.

The JSON line: {"device": ..., "gpu_name": ..., "batch_size": ..., "epochs": ..., "runs": [{"device":
"CPU"|"GPU", "precision": ..., "xla": ..., "examples_per_sec": ..., "test_accuracy": ...}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _data(batch_size: int):
    import numpy as np
    import tensorflow as tf

    from trainer import sources

    arrays = sources.digits_arrays()
    x = (arrays["x_train"].astype(np.float32) / 255.0)[..., None]
    y = arrays["y_train"].astype(np.int64)
    train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).repeat()
             .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    test = ((arrays["x_test"].astype(np.float32) / 255.0)[..., None], arrays["y_test"].astype(np.int64))
    return train, len(x), test


def run_one(device: str, precision: str, xla: bool, epochs: int, batch_size: int, data) -> dict:
    """One configuration on `device` ("CPU" or "GPU"): {examples_per_sec, test_accuracy, ...}."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer import distribute, model
    from trainer.train import STEPS_PER_CALL, _train_step

    train, count, (x_test, y_test) = data
    steps_per_epoch = max(1, count // batch_size)
    total = epochs * steps_per_epoch
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    with tf.device(f"/{device}:0"):
        net = model.build(0, precision)
        schedule = keras.optimizers.schedules.CosineDecay(3e-3, total)
        optimizer = distribute.optimizer(schedule, strategy, scale=batch_size, precision=precision)
        optimizer.build(net.trainable_variables)
        step = _train_step(strategy, net, optimizer, batch_size, xla=xla)
        iterator = iter(train)
        done, timed, seconds = 0, 0, 0.0
        while done < total:
            n = 1 if done == 0 else min(STEPS_PER_CALL, total - done)
            t0 = time.perf_counter()
            float(step(iterator, n)[0])  # reading the result back waits for the steps
            if done:
                seconds += time.perf_counter() - t0
                timed += n * batch_size
            done += n
        logits = net(x_test, training=False)
    accuracy = float(np.mean(np.argmax(logits.numpy(), -1) == y_test))
    return {"device": device, "precision": precision, "xla": xla, "steps": total,
            "examples_per_sec": round(timed / seconds, 1) if seconds else None,
            "test_accuracy": round(accuracy, 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="measure the CPU only, even where a GPU is visible")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per configuration (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="batch size, the trainer's default (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before TensorFlow starts: it never opens the GPU
    from trainer import distribute

    gpus = distribute.setup_devices()
    import tensorflow as tf

    gpu_name = None
    if gpus:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        gpu_name = details.get("device_name")
    devices = ["CPU"] + (["GPU"] if gpus else [])
    data = _data(args.batch_size)
    runs = []
    for device in devices:
        for precision in distribute.PRECISIONS:
            for xla in (False, True):
                t0 = time.monotonic()
                try:
                    run = run_one(device, precision, xla, args.epochs, args.batch_size, data)
                except Exception as e:  # one configuration the device cannot run: the others still count
                    run = {"device": device, "precision": precision, "xla": xla,
                           "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
                run["seconds"] = round(time.monotonic() - t0, 1)
                print(f"{device} {precision:<15} xla={'on ' if xla else 'off'} "
                      f"{run.get('examples_per_sec')} examples/s, test accuracy {run.get('test_accuracy')}"
                      + (f" ({run['error']})" if "error" in run else ""), file=sys.stderr, flush=True)
                runs.append(run)
    print(json.dumps({"device": gpu_name or "CPU only", "gpu_name": gpu_name, "gpus": gpus,
                      "cpus": os.cpu_count(), "tensorflow": tf.__version__, "batch_size": args.batch_size,
                      "epochs": args.epochs, "runs": runs}), flush=True)
    return 0 if all("error" not in r for r in runs if r["device"] == "CPU") else 1


if __name__ == "__main__":
    sys.exit(main())
