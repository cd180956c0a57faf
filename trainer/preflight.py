"""What `train` checks before TensorFlow starts, on every process alike: its flags against the rules the stack
applies to its config too, and every process's share of the training set, so that all of them fail at once
with the reason (rather than one failing and the others reporting a lost peer)."""

from __future__ import annotations

from common.errors import UserError
from trainer import tfconfig


def check_args(args, processes: int | None = None) -> None:
    """The rules the stack applies to its config too (`common.rules`)."""
    from common import rules

    problems = rules.train_problems(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, shift=args.shift,
        rotate=args.rotate, scale=args.scale,
        checkpoint_steps=args.checkpoint_steps, keep_checkpoints=args.keep_checkpoints, log_steps=args.log_steps,
        summary_secs=args.summary_secs, processes=processes)
    if problems:
        p = problems[0]
        raise UserError(p.message(), p.value, p.fix)


def task_of_rank(config: tfconfig.TFConfig, rank: int) -> str:
    if config.cluster.get("chief"):
        return "chief-0" if rank == 0 else f"worker-{rank - 1}"
    return f"worker-{rank}" if config.cluster else "chief-0"


def check_shares(manifest: dict, config: tfconfig.TFConfig, data_store) -> None:
    """Every process computes every process's share of the training set from the manifest, before TensorFlow
    starts, so all of them fail at once with the reason (rather than one failing and the others reporting a
    lost peer)."""
    from trainer import data

    info, n = manifest["splits"]["train"], config.num_workers
    count = int(info["count"])
    if count < n:
        raise UserError(f"the training set has fewer examples than there are training processes ({n})",
                        f"{count} examples at {data_store.url}",
                        f"train with at most {count} process(es) (a chief and {max(count - 1, 0)} worker(s)), "
                        "or prepare a dataset with more examples")
    empty = [task_of_rank(config, r) for r, c in enumerate(data.share_counts(info, n)) if c == 0]
    if empty:
        raise UserError(f"the training set's shards leave {', '.join(empty)} with no examples",
                        f"{len(info['shards'])} shard(s) with counts "
                        f"{[int(s['count']) for s in info['shards']]} at {data_store.url}",
                        "run prepare-data again (it writes no empty shards), or train with fewer workers")
