"""What a user would write instead of our trainer: the same model trained with a plain Keras `model.fit`, one
process, on the prepared shards on local disk. `python -m bench` compares its examples/s with `train`'s
(`trainer_vs_keras_fit`).

    python -m bench.keras_fit --data-url file:///path/to/data [--epochs 1] [--batch-size 64]

The same model (`trainer.model.build`), loss (cross-entropy on the logits, label smoothing 0.1), optimizer
(Adam, cosine-decayed learning rate 0.003) and batch size as `train`, the shards parsed by the trainer's own
tf.data parse (`trainer.data.read_files`), shuffled, repeated and batched; no augmentation (the bench runs
`train` without it too). Everything else is Keras' default: `compile()` with `jit_compile="auto"` and
`steps_per_execution=1`. examples/s leaves out the first step (tracing), as `train`'s does. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keras_fit", description=__doc__.splitlines()[0])
    parser.add_argument("--data-url", required=True, help="the prepared dataset on local disk: file:///path")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.monotonic()
    import keras
    import tensorflow as tf

    from trainer import data, model
    from trainer.store import open_store

    store = open_store(args.data_url, "DATA_URL")
    info = data.read_manifest(store)["splits"]["train"]
    count = int(info["count"])
    paths = [store.local_path(s["name"]) for s in info["shards"]]
    steps_per_epoch = max(1, count // args.batch_size)
    total = steps_per_epoch * args.epochs

    keras.utils.set_random_seed(args.seed)
    ds = (data.read_files(paths).shuffle(min(count, 10_000), seed=args.seed).repeat()
          .batch(args.batch_size, drop_remainder=True)
          .map(lambda x, y: (x, tf.one_hot(y, model.NUM_CLASSES)), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
    net = model.build(args.seed)
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, total)),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        first = end = None

        def on_train_batch_end(self, batch, logs=None):
            if self.first is None:
                self.first = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    timer = Timer()
    history = net.fit(ds, epochs=args.epochs, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0,
                      shuffle=False)  # the dataset shuffles itself
    seconds = timer.end - timer.first
    print(json.dumps({
        "examples_per_sec": round((total - 1) * args.batch_size / seconds, 1) if seconds > 0 else None,
        "steps": total, "batch_size": args.batch_size, "jit_compile": bool(net.jit_compile),
        "train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "wall_s": round(time.monotonic() - start, 3),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
