"""The distribution strategy from `TF_CONFIG`, and the optimizer whose gradient all-reduce it runs.

`strategy(config)` -> the default strategy for one process, else MultiWorkerMirroredStrategy over gRPC.
`optimizer(schedule, strategy, scale)` -> Adam whose cross-process gradient sum travels as ALLREDUCE_DTYPE.
TensorFlow and Keras are imported inside the functions (the trainer package imports nothing heavy).
"""

from __future__ import annotations

from trainer import tfconfig

# The gradient all-reduce between processes sends float16: half the bytes of float32. Each process scales its
# gradient to that of the summed (not averaged) loss first, which keeps it in float16's normal range, then
# applies the float16 sum in float32. PyTorch's DDP offers the same as `fp16_compress_hook`
# (torch.distributed.algorithms.ddp_comm_hooks.default_hooks), Horovod as `hvd.Compression.fp16`.
ALLREDUCE_DTYPE = "float16"


def strategy(config: tfconfig.TFConfig):
    """One process: the default strategy. A chief and workers: MultiWorkerMirroredStrategy over gRPC, whose
    collectives pack every gradient into one all-reduce per step (`bytes_per_pack=0`) with the ring
    implementation (the one there is on CPUs)."""
    import tensorflow as tf

    if not config.distributed:
        return tf.distribute.get_strategy()
    # The cluster comes from our own parse of TF_CONFIG (tfconfig is the only reader of the variable).
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(config.cluster), task_type=config.task_type, task_id=config.task_index,
        rpc_layer="grpc",
    )
    options = tf.distribute.experimental.CommunicationOptions(
        bytes_per_pack=0, implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)


def optimizer(schedule, strategy, scale: float = 1.0):
    """Adam on `schedule`. With more than one replica, its gradient all-reduce sends ALLREDUCE_DTYPE, each
    gradient multiplied by `scale` on the way (the global batch size: the loss is divided by it) and divided
    by it after.

    Keras 3's TensorFlow optimizer sums the replicas' gradients in `_all_reduce_sum_gradients` (keras
    3.15.1, `keras/src/backend/tensorflow/optimizer.py`), a float32 all-reduce through the replica context;
    this subclass does the same sum in ALLREDUCE_DTYPE. tests/trainer/test_allreduce.py checks that Keras still
    calls it and that the sum is right."""
    import keras
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1 or ALLREDUCE_DTYPE == "float32":
        return keras.optimizers.Adam(schedule)
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
