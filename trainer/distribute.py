"""The distribution strategy from `TF_CONFIG`, the numeric precision, and the optimizer whose gradient
all-reduce the strategy runs.

`setup_devices()` -> the GPUs this process sees (memory growth turned on for each).
`strategy(config, gpus)` -> the default strategy for one process, else MultiWorkerMirroredStrategy over gRPC
(NCCL collectives with GPUs, ring without).
`resolve_precision(choice, gpus)` -> the Keras dtype policy name (`--precision`, default by device).
`optimizer(schedule, strategy, scale, precision)` -> Adam whose cross-process gradient sum travels as
ALLREDUCE_DTYPE, wrapped in loss scaling under mixed_float16.
TensorFlow and Keras are imported inside the functions (the trainer package imports nothing heavy).
"""

from __future__ import annotations

from trainer import tfconfig

# The gradient all-reduce between processes sends float16: half the bytes of float32. Each process scales its
# gradient to that of the summed (not averaged) loss first, which keeps it in float16's normal range, then
# applies the float16 sum in float32. PyTorch's DDP offers the same as `fp16_compress_hook`
# (torch.distributed.algorithms.ddp_comm_hooks.default_hooks), Horovod as `hvd.Compression.fp16`.
ALLREDUCE_DTYPE = "float16"


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(choice: str | None, gpus: int) -> str:
    """`--precision` as given, else mixed_float16 where a GPU is visible (its tensor cores run float16 at
    several times the float32 rate) and float32 on CPUs (which gain nothing from float16 and lose speed)."""
    if choice:
        return choice
    return "mixed_float16" if gpus else "float32"


def setup_devices() -> int:
    """The number of GPUs this process sees, each set to grow its memory as needed rather than take the whole
    card at start (TensorFlow's default), so that a GPU shared with an evaluation or a second process still
    has room. Must run before TensorFlow initialises the GPUs (before the strategy)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return len(gpus)


def communication(gpus: int) -> str:
    """The collective implementation: NCCL where this process has a GPU (the gradients live there and NCCL
    moves them without a copy to host memory), ring otherwise (the one there is on CPUs). The stack gives the
    chief and every worker the same `nvidia.com/gpu` limit, so every process of a job decides alike."""
    return "NCCL" if gpus else "RING"


def strategy(config: tfconfig.TFConfig, gpus: int = 0):
    """One process: the default strategy. A chief and workers: MultiWorkerMirroredStrategy over gRPC, whose
    collectives pack every gradient into one all-reduce per step (`bytes_per_pack=0`) with the implementation
    `communication(gpus)` picks."""
    import tensorflow as tf

    if not config.distributed:
        return tf.distribute.get_strategy()
    # The cluster comes from our own parse of TF_CONFIG (tfconfig is the only reader of the variable).
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(config.cluster), task_type=config.task_type, task_id=config.task_index,
        rpc_layer="grpc",
    )
    implementation = getattr(tf.distribute.experimental.CommunicationImplementation, communication(gpus))
    options = tf.distribute.experimental.CommunicationOptions(bytes_per_pack=0, implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)


def optimizer(schedule, strategy, scale: float = 1.0, precision: str = "float32"):
    """Adam on `schedule`. With more than one replica, its gradient all-reduce sends ALLREDUCE_DTYPE, each
    gradient multiplied by `scale` on the way (the global batch size: the loss is divided by it) and divided
    by it after. Under mixed_float16 it is wrapped in `loss_scaled` (bfloat16 has float32's exponent range and
    needs no loss scaling).

    Keras 3's TensorFlow optimizer sums the replicas' gradients in `_all_reduce_sum_gradients` (keras
    3.15.1, `keras/src/backend/tensorflow/optimizer.py`), a float32 all-reduce through the replica context;
    this subclass does the same sum in ALLREDUCE_DTYPE. tests/trainer/test_allreduce.py checks that Keras still
    calls it and that the sum is right."""
    import keras

    if strategy.num_replicas_in_sync == 1 or ALLREDUCE_DTYPE == "float32":
        inner = keras.optimizers.Adam(schedule)
    else:
        inner = _compressed_adam(schedule, scale)
    return loss_scaled(inner) if precision == "mixed_float16" else inner


def _compressed_adam(schedule, scale: float):
    import keras
    import tensorflow as tf

    dtype = tf.as_dtype(ALLREDUCE_DTYPE)

    class Adam(keras.optimizers.Adam):
        def _all_reduce_sum_gradients(self, grads_and_vars):
            context = tf.distribute.get_replica_context()
            pairs = [(g, v) for g, v in grads_and_vars if g is not None]
            if context is None or not pairs:
                return super()._all_reduce_sum_gradients(grads_and_vars)
            self.compressed_reductions += 1  # counted while tracing: how often Keras calls this
            sent = [tf.cast(g * scale, dtype) for g, _ in pairs]
            summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, sent))
            return [(None if g is None else tf.cast(next(summed), g.dtype) / scale, v) for g, v in grads_and_vars]

    optimizer = Adam(schedule)
    optimizer.compressed_reductions = 0
    return optimizer


def loss_scaled(inner):
    """Keras' dynamic loss scaling around `inner`, with the decision to skip a step taken by every replica
    alike. Keras checks each replica's own gradients before its all-reduce (in `apply`, keras 3.15.1
    `keras/src/optimizers/loss_scale_optimizer.py`); under MultiWorkerMirroredStrategy one process finding an
    overflow would skip the all-reduce while the others wait in it. Here the finite flag is all-reduced first
    (one scalar per step), so every replica skips or applies the same steps."""
    import keras
    import tensorflow as tf

    class LossScaleOptimizer(keras.mixed_precision.LossScaleOptimizer):
        def check_finite(self, grads):
            finite = super().check_finite(grads)
            context = tf.distribute.get_replica_context()
            if context is None or context.num_replicas_in_sync == 1:
                return finite
            # The strategies reduce by SUM or MEAN only: count the replicas that overflowed.
            overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
            return tf.equal(overflowed, 0.0)

    return LossScaleOptimizer(inner)
