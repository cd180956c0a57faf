"""Peak memory of `prepare-data` against the size of its source.

    python -m bench.prepare_memory [--images 60000 300000]

For each size it writes an mnist.npz-layout source of that many random training images (plus 10,000 test
images) into a temporary folder, runs `python -m trainer prepare-data --source <it> --data-url file:///<tmp>`
as its own process, and reads that process's peak resident set size from the kernel (`os.wait4`, ru_maxrss).
It prints one line per size, the growth from the smallest size, and the baseline of importing TensorFlow alone
in the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGES = 10_000


def write_source(path: Path, images: int, test_images: int = TEST_IMAGES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (images, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, images).astype(np.int64),
             x_test=rng.integers(0, 256, (test_images, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, test_images).astype(np.int64))
    return path


def peak_rss(args: list[str], env: dict | None = None) -> tuple[int, int]:
    """(exit code, peak RSS in bytes) of `python ARGS` run from the repository root."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return proc.returncode, usage.ru_maxrss * 1024  # Linux reports kilobytes


def prepare_peak(images: int, test_images: int = TEST_IMAGES) -> int:
    """Peak RSS in bytes of one `prepare-data` run over a fresh source of `images` training images."""
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        source = write_source(Path(tmp) / "source.npz", images, test_images)
        rc, peak = peak_rss(["-m", "trainer", "prepare-data", "--source", str(source),
                             "--data-url", f"file://{tmp}/out"])
        if rc != 0:
            raise RuntimeError(f"prepare-data exited {rc} on {images} images")
        return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[60_000, 300_000])
    args = parser.parse_args(argv)
    _, baseline = peak_rss(["-c", "import tensorflow"])
    print(f"import tensorflow alone: peak {baseline / 1e6:.0f} MB", flush=True)
    peaks = {}
    for images in args.images:
        peaks[images] = prepare_peak(images)
        print(f"prepare-data, {images:>7,} train images: peak {peaks[images] / 1e6:.0f} MB "
              f"({(peaks[images] - peaks[args.images[0]]) / 1e6:+.0f} MB against {args.images[0]:,})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
