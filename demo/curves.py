"""Training curves as a picture: loss and accuracy against step for each task, read back from the run's
TensorBoard event files on the store (so the picture shows what TensorBoard would), drawn with matplotlib.

    python -m demo.curves RUN_URL OUT.png      # e.g. s3://demo/runs/demo-20261129-170000 training.png

`read_scalars` downloads `RUN_URL/logs/<task>/events*` and parses them with TensorBoard's own event-file
loader; `plot` writes the PNG. Needs the S3 settings (`S3_ENDPOINT`, keys) in the environment for s3://.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from trainer.store import Store, open_store

PANELS = (("loss", "loss (cross-entropy)"), ("accuracy", "accuracy (training batches)"))


def read_scalars(logs: Store) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{task: {tag: [(step, value), ...] sorted by step}} from every event file under `logs` (the run's
    `logs/` folder: one sub-folder per task, several event files each when the writer rolled)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    keys = sorted(k for k in logs.list() if "tfevents" in k.rsplit("/", 1)[-1])
    with tempfile.TemporaryDirectory(prefix="curves-") as tmp:
        for key in keys:
            task = key.rsplit("/", 1)[0] if "/" in key else "."
            path = Path(tmp) / key
            logs.get_file(key, path)
            tags = out.setdefault(task, {})
            # EventFileLoader turns TF2 scalar summaries (tensors) and older simple_value ones alike into tensors.
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.HasField("tensor"):
                        number = float(tensor_util.make_ndarray(value.tensor))
                        tags.setdefault(value.tag, []).append((int(event.step), number))
    for tags in out.values():
        for tag, points in tags.items():
            tags[tag] = sorted(dict(points).items())  # one point per step (a restart may write a step twice)
    return out


def plot(scalars: dict[str, dict[str, list[tuple[int, float]]]], path, title: str = "") -> Path:
    """Writes a PNG (two panels, loss and accuracy, one line per task) to `path`; returns it. Raises
    ValueError when no task has a `loss` scalar."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    tasks = sorted(t for t, tags in scalars.items() if tags.get("loss"))
    if not tasks:
        raise ValueError("no loss scalars to plot: the run wrote no event files with a 'loss' tag")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(11, 4), dpi=100)
    for ax, (tag, label) in zip(axes, PANELS, strict=True):
        for task in tasks:
            points = scalars[task].get(tag, [])
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=task, linewidth=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if tag == "loss":
            ax.set_yscale("log")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m demo.curves RUN_URL OUT.png", file=sys.stderr)
        return 2
    run = open_store(argv[0], "RUN_URL")
    out = plot(read_scalars(run.child("logs")), argv[1], title=run.url)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
