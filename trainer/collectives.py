"""What every training process calls together (collectives: all of them must call each one, in the same
order, or the others wait): sums and gathers across the processes, the start-step check and the barrier.
With one process each is a plain local computation."""

from __future__ import annotations

from common.errors import UserError


def all_sum(strategy):
    """sum(values: list[float]) -> each value summed over every process (a collective: all of them must call
    it with the same length); the identity for one process. Traced once per length."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return lambda values: [float(v) for v in values]

    @tf.function
    def reduce(values):
        per_replica = strategy.run(lambda v: tf.identity(v), args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda values: [float(v) for v in reduce(tf.constant(values, tf.float64)).numpy()]



def peer_error(e: Exception) -> str:
    """The informative line of a collective's failure ("Collective ops is aborted by: ...")."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for line in lines:
        if "aborted by" in line or "Connection" in line or "connect" in line:
            return line[:200]
    return (lines[0] if lines else type(e).__name__)[:200]


def gather(strategy, value: float) -> list[float]:
    """`value` from every process (a collective: all of them must call it)."""
    import tensorflow as tf

    @tf.function
    def gather_all():
        per_replica = strategy.run(lambda: tf.constant([value], tf.float64))
        return strategy.gather(per_replica, axis=0)

    return [float(v) for v in gather_all().numpy()]


def check_same_start(strategy, step: int) -> None:
    """Every process must start at the same step, or their step counts differ and the collectives hang."""
    if strategy.num_replicas_in_sync == 1:
        return
    steps = gather(strategy, float(step))
    low, high = min(steps), max(steps)
    if low != high:
        raise UserError("the processes restored different checkpoints", f"steps {low:.0f}..{high:.0f}",
                        "a checkpoint was published while the job started: run the job again")


def barrier(strategy, ok: bool) -> bool:
    """Blocks until every process gets here; True when every process passed ok=True."""
    if strategy.num_replicas_in_sync == 1:
        return ok
    return min(gather(strategy, 1.0 if ok else 0.0)) == 1.0
