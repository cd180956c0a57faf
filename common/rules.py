"""The trainer's argument rules, in one place: `train` and `prepare-data` refuse bad flags with them, and the
Pulumi stack (`infra.config`) applies the same rules to its config before it declares anything, so a value the
trainer would refuse never reaches a pod. Standard library only: the stack and every image import this.

Each rule gives a `Problem`: the flag, what is wrong, the bad value, and a value that would pass. The caller
words the fix in its own terms (`pass --epochs 1 or more`, `pulumi config set kubeflow-e2e:training.epochs 1`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LEARNING_RATE = 3e-3
MAX_ROTATE = 45  # degrees: the augmentation's random rotation (`train --rotate`)
MAX_SCALE = 0.5  # the augmentation's random zoom, 1 +- this (`train --scale`)
MIN_SHARDS = 4  # prepare-data's default: enough files to download in parallel


@dataclass(frozen=True)
class Problem:
    flag: str  # "--batch-size"
    problem: str  # "must be at least 1"
    value: object  # the bad value
    suggestion: object  # a value that passes
    fix: str  # the trainer's wording: "pass --batch-size 2 or more (it is the global batch)"

    def message(self) -> str:
        return f"{self.flag} {self.problem}"


def _at_least(flag: str, value: float, low: int) -> Problem | None:
    if value < low:
        return Problem(flag, f"must be at least {low}", value, max(low, 1), f"pass {flag} {max(low, 1)} or more")
    return None


def train_problems(
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    shift: int = 0,
    rotate: float = 0.0,
    scale: float = 0.0,
    checkpoint_steps: int = 0,
    keep_checkpoints: int = 0,
    log_steps: int = 1,
    summary_secs: float = 5.0,
    processes: int | None = None,
) -> list[Problem]:
    """Every problem with `train`'s flags, first the per-flag ones, then the cross-check against the number of
    processes (chief + workers) when it is known: the global batch is split over them, at least one each."""
    found = [
        p
        for p in (
            _at_least("--epochs", epochs, 1),
            _at_least("--batch-size", batch_size, 1),
            _at_least("--shift", shift, 0),
            _at_least("--checkpoint-steps", checkpoint_steps, 0),
            _at_least("--keep-checkpoints", keep_checkpoints, 0),
            _at_least("--log-steps", log_steps, 1),
        )
        if p
    ]
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        found.append(
            Problem(
                "--learning-rate",
                "must be a positive number",
                learning_rate,
                DEFAULT_LEARNING_RATE,
                f"pass e.g. {DEFAULT_LEARNING_RATE}",
            )
        )
    if not (0 <= rotate <= MAX_ROTATE):
        found.append(Problem("--rotate", f"must be between 0 and {MAX_ROTATE} degrees", rotate, 10,
                             "pass e.g. --rotate 10 (0 turns rotations off)"))
    if not (0 <= scale <= MAX_SCALE):
        found.append(Problem("--scale", f"must be between 0 and {MAX_SCALE}", scale, 0.1,
                             "pass e.g. --scale 0.1 (zoom by 0.9-1.1; 0 turns zooming off)"))
    if not (summary_secs > 0 and math.isfinite(summary_secs)):
        found.append(Problem("--summary-secs", "must be positive", summary_secs, 5, "pass e.g. 5"))
    if processes is not None and batch_size >= 1 and batch_size < processes:
        found.append(
            Problem(
                "--batch-size",
                "is smaller than the number of processes",
                batch_size,
                processes,
                f"pass --batch-size {processes} or more (it is the global batch)",
            )
        )
    return found


def shards_problems(shards: int) -> list[Problem]:
    """`prepare-data --shards`."""
    if shards < 1:
        return [Problem("--shards", "must be at least 1", shards, MIN_SHARDS, "pass a positive number such as 4")]
    return []


def shards_for(processes: int) -> int:
    """The shard count that suits `processes` readers: the smallest multiple of it that is at least
    MIN_SHARDS, so every process reads the same number of whole files (`trainer.data.share`)."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1 ({processes})")
    return processes * max(1, math.ceil(MIN_SHARDS / processes))
