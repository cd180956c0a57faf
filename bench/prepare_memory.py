"""Peak memory of `prepare-data` against the size of its source.

    python -m bench.prepare_memory [--images 60000 300000]

For each size it writes an mnist.npz-layout source of that many random training images (plus 10,000 test
images) into a temporary folder, runs `python -m trainer prepare-data --source <it> --data-url file:///<tmp>`
as its own process, and reads that process's peak resident set size from the kernel (VmHWM in
/proc/self/status, read as it exits).
It prints one line per size, the growth from the smallest size, and the baseline of importing TensorFlow alone
in the same way.
"""

from __future__ import annotations

import argparse
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


# Runs `-m MODULE ARGS` or `-c CODE` inside this wrapper, then writes the process's VmHWM (peak resident set
# of its own address space, /proc/self/status) to a file. Not ru_maxrss from wait4: on exec Linux folds the
# forking parent's high-water mark into the child's, so a large parent (a pytest run with TF loaded) would show.
_WRAPPER = """
import runpy, sys
report, mode, target = sys.argv[1:4]
sys.argv = [target, *sys.argv[4:]]
code = 0
try:
    if mode == "-m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        exec(compile(target, "<bench>", "exec"), {"__name__": "__main__"})
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
sys.exit(code)
"""


def peak_rss(args: list[str], env: dict | None = None) -> tuple[int, int]:
    """(exit code, peak RSS in bytes) of `python -m MODULE ...` or `python -c CODE` run from the repository
    root; a failure raises RuntimeError with the end of its stderr."""
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
        report, err_path = Path(tmp) / "peak", Path(tmp) / "stderr"
        with open(err_path, "wb") as err:
            rc = subprocess.run([sys.executable, "-c", _WRAPPER, str(report), *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err).returncode
        if rc != 0:
            raise RuntimeError(f"python {' '.join(args)} exited {rc}: {err_path.read_bytes()[-2000:]!r}")
        return rc, int(report.read_text()) * 1024  # kB


def prepare_peak(images: int, test_images: int = TEST_IMAGES) -> int:
    """Peak RSS in bytes of one `prepare-data` run over a fresh source of `images` training images."""
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        source = write_source(Path(tmp) / "source.npz", images, test_images)
        return peak_rss(["-m", "trainer", "prepare-data", "--source", str(source),
                         "--data-url", f"file://{tmp}/out"])[1]


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
