"""The demo's knobs (environment variables, see `python -m demo`'s docstring), read and checked once."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from demo.supervisor import ROOT

TB_VENV = ROOT / ".venv-tensorboard"
TB_REQUIREMENTS = ROOT / "requirements" / "tensorboard.txt"


def tensorboard_install() -> list[str]:
    """The command that makes TB_VENV: TensorBoard and boto3 as the TensorBoard image has them, no TensorFlow
    (with TensorFlow present TensorBoard refuses `s3://`). Needs the package index, once."""
    return ["sh", "-c", f'"{sys.executable}" -m venv "{TB_VENV}" && "{TB_VENV}/bin/pip" install --quiet '
            f'--disable-pip-version-check -r "{TB_REQUIREMENTS}" -c "{ROOT}/requirements/constraints.txt"']


def env_int(name: str, default: int, low: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        sys.exit(f"error: {name} must be an integer >= {low} ({raw!r}): set it like {name}={default}")
    return value


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Settings:
    def __init__(self) -> None:
        self.dataset = (os.environ.get("DATASET") or "digits").strip()
        if self.dataset.lower() in ("digits", "mnist"):
            self.dataset = self.dataset.lower()
            if self.dataset == "digits":
                self.source = "digits"
            else:  # prepare-data's default source, the public mnist.npz
                from trainer.sources import DEFAULT_SOURCE

                self.source = DEFAULT_SOURCE
        else:
            self.source = self.dataset  # a path or URL of an mnist.npz-layout file
            self.dataset = "custom"
        self.workers = env_int("WORKERS", 1)
        self.epochs = env_int("EPOCHS", 0, low=1) if os.environ.get("EPOCHS", "").strip() else None
        self.tensorboard = env_flag("TENSORBOARD")
        self.train_args = shlex.split(os.environ.get("TRAIN_ARGS", ""))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = Path(os.environ.get("DEMO_DIR") or ROOT / ".demo" / stamp).resolve()
        self.run = f"demo-{stamp}"

    def overrides(self) -> dict:
        """The dev stack's config as the knobs set it."""
        out = {"training.run": self.run, "data.prepareSource": self.source}
        if self.epochs:
            out["training.epochs"] = self.epochs
        return out
