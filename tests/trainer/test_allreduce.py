"""The training step's gradient all-reduce in 16 bits (`trainer.distribute.optimizer`), and the loss scaling
of mixed_float16 around it, under a real MirroredStrategy over two CPU devices in a child process (the devices
must be set before TensorFlow starts)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tests.helpers.process import stdout_json

SCRIPT = r"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras
import numpy as np
import tensorflow as tf
from trainer import distribute

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# Per-replica gradients whose float32 sum 16 bits cannot hold: 1 + 2**-13 needs 14 bits of mantissa.
parts = [np.float32([1.0, 3.0]), np.float32([2.0 ** -13, 2.0 ** -20])]
with strategy.scope():
    var = keras.Variable(np.zeros(2, np.float32))
    optimizer = distribute.optimizer(1e-3, strategy, scale=4.0)
    optimizer.build([var])

def reduced():
    g = tf.constant(parts)[tf.distribute.get_replica_context().replica_id_in_sync_group]
    return optimizer._all_reduce_sum_gradients([(g, var)])[0][0]

sums = strategy.experimental_local_results(strategy.run(reduced))
def step():
    g = tf.constant(parts)[tf.distribute.get_replica_context().replica_id_in_sync_group]
    optimizer.apply_gradients([(g, var)])
before = optimizer.compressed_reductions
strategy.run(step)
dt = tf.as_dtype(distribute.ALLREDUCE_DTYPE)
expected = (tf.cast(tf.cast(parts[0] * 4, dt) + tf.cast(parts[1] * 4, dt), tf.float32) / 4).numpy().tolist()
print(json.dumps({"class": type(optimizer).__name__, "expected": expected, "dtype": dt.name,
                  "sums": [s.numpy().tolist() for s in sums],
                  "dtypes": [s.dtype.name for s in sums], "calls": optimizer.compressed_reductions - before,
                  "moved": bool(np.all(var.numpy() != 0)),
                  "plain": type(distribute.optimizer(1e-3, tf.distribute.get_strategy())).__module__}))
"""


def test_gradients_are_summed_in_16_bits_and_keras_calls_the_override():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = stdout_json(proc)
    # Both replicas get the same sum, in float32, rounded as the 16-bit type rounds it: 1 + 2**-13 -> 1.0 and
    # 3 + 2**-20 -> 3.0 (float32 would keep 1.0001220703125).
    assert out["dtype"] in ("float16", "bfloat16")
    assert out["sums"] == [out["expected"]] * 2 == [[1.0, 3.0]] * 2 and out["dtypes"] == ["float32", "float32"]
    # Keras' apply_gradients went through the override (once per replica) and moved the variable.
    assert out["calls"] >= 1 and out["moved"]
    # One replica: Keras' own optimizer, no all-reduce to compress.
    assert out["plain"].startswith("keras.")


LOSS_SCALE_SCRIPT = r"""import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras
import numpy as np
import tensorflow as tf
from trainer import distribute

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# Replica 0's gradient is finite, replica 1's overflowed (inf): every replica must skip the step.
parts = [np.float32([1.0, 1.0]), np.float32([np.inf, 1.0])]
with strategy.scope():
    var = keras.Variable(np.ones(2, np.float32))
    optimizer = distribute.optimizer(1e-3, strategy, scale=4.0, precision="mixed_float16")
    optimizer.build([var])
scale = float(optimizer.dynamic_scale.numpy())

@tf.function
def step(values):
    def replica(values):
        g = values[tf.distribute.get_replica_context().replica_id_in_sync_group]
        optimizer.apply_gradients([(g, var)])
    strategy.run(replica, args=(values,))

step(tf.constant(parts))
skipped = {"var": var.numpy().tolist(), "scale": float(optimizer.dynamic_scale.numpy()),
           "iterations": int(optimizer.iterations.numpy())}
step(tf.constant([parts[0], parts[0]]))
applied = {"var": var.numpy().tolist(), "scale": float(optimizer.dynamic_scale.numpy()),
           "iterations": int(optimizer.iterations.numpy())}
print(json.dumps({"class": type(optimizer).__name__, "inner": type(optimizer.inner_optimizer).__name__,
                  "initial_scale": scale, "skipped": skipped, "applied": applied,
                  "bf16": type(distribute.optimizer(1e-3, strategy, precision="mixed_bfloat16")).__name__}))
"""


def test_a_step_that_overflowed_on_one_replica_is_skipped_on_every_replica():
    proc = subprocess.run([sys.executable, "-c", LOSS_SCALE_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = stdout_json(proc)
    # mixed_float16 wraps the (16-bit all-reduce) Adam in loss scaling; mixed_bfloat16 needs none.
    assert out["class"] == "LossScaleOptimizer" and out["inner"] == "Adam" and out["bf16"] == "Adam"
    # One replica's inf: the step is skipped everywhere (Keras alone applies it from replica 0's view and
    # writes NaN into the weights), and the scale halves.
    assert out["skipped"] == {"var": [1.0, 1.0], "scale": out["initial_scale"] / 2, "iterations": 0}
    # A finite step afterwards is applied, unscaled: Adam's first step moves each weight by about the learning
    # rate (1e-3), whatever the size of the (scaled) gradient.
    assert out["applied"]["iterations"] == 1
    assert all(1 - 1.5e-3 < v < 1 - 0.5e-3 for v in out["applied"]["var"]), out["applied"]
