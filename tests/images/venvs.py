"""One virtualenv per image, holding only what that image installs: `requirements/<name>.txt` under
`requirements/constraints.txt`, exactly as the Dockerfile's `pip install` line does.

`python -m tests.images.venvs` (run by `make test` and `make image-venvs`) builds the missing ones; the tests
only use them and never reach the package index. Each venv is cached by a hash of its requirement file, the
constraints and the Python minor version, under `$IMAGE_VENVS` (default `~/.cache/kubeflow-e2e/venvs/`, outside
the repository, so clones and worktrees share them): `trainer-<hash>/`, `sidecar-<hash>/`, ... A changed file
means a new hash and a new venv. Builds take a lock, and a venv counts only once its `.complete` stamp exists,
so two concurrent `make test` runs and an interrupted build are both safe.

`serving-tf` is not an image: it is the TensorFlow that the pinned `tensorflow/serving` image is built on,
for the test that loads the trainer's export under it (`requirements/serving-tf.txt`, which pins every package
itself and is installed without the constraints).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
IMAGES = ("trainer", "sidecar", "tensorboard")
VENVS = (*IMAGES, "serving-tf")
OWN_PINS = ("serving-tf",)  # pins every package itself (another TensorFlow): installed without constraints.txt
STAMP = ".complete"
_BUILDER_VERSION = "1"  # bump when the way a venv is built changes


def cache_dir() -> Path:
    return Path(os.environ.get("IMAGE_VENVS") or Path.home() / ".cache" / "kubeflow-e2e" / "venvs")


def requirement_file(name: str) -> Path:
    return REQUIREMENTS / f"{name}.txt"


def digest(name: str) -> str:
    h = hashlib.sha256()
    for part in (
        _BUILDER_VERSION,
        f"{sys.version_info.major}.{sys.version_info.minor}",
        requirement_file(name).read_text(),
        "" if name in OWN_PINS else (REQUIREMENTS / "constraints.txt").read_text(),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def path(name: str) -> Path:
    """Where the venv of `name` lives for the current requirement files (built or not)."""
    if name not in VENVS:
        raise ValueError(f"unknown venv {name!r}: one of {', '.join(VENVS)}")
    return cache_dir() / f"{name}-{digest(name)}"


def ready(name: str) -> Path | None:
    p = path(name)
    return p if (p / STAMP).is_file() else None


def build(name: str, log=print) -> Path:
    """Builds the venv of `name` unless a complete one exists; returns its path. Needs the package index."""
    target = path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same venv waits here, then finds it done
        if (target / STAMP).is_file():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a build that was interrupted
        start = time.monotonic()
        log(f"image venv {name}: building {target} from requirements/{name}.txt (once per change of the file)")
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        constraints = [] if name in OWN_PINS else ["-c", str(REQUIREMENTS / "constraints.txt")]
        proc = subprocess.run(
            [*pip, "-r", str(requirement_file(name)), *constraints],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise SystemExit(
                f"image venv {name}: pip install -r requirements/{name}.txt failed (exit {proc.returncode}):\n"
                f"{proc.stderr[-3000:]}"
            )
        freeze = subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout
        (target / STAMP).write_text(freeze)
        log(f"image venv {name}: built in {time.monotonic() - start:.0f} s")
        return target


# The GPU trainer image gets no venv (its CUDA wheels are gigabytes): its requirements are only resolved, by a
# pip dry run that reads each wheel's metadata through HTTP range requests (`fast-deps`) and downloads no wheel.
# That needs a newer pip than Python 3.11's bundled 23.2, whose resolver still downloads every wheel whole at its
# end, dry run or not (pip 23.2.1 `resolution/resolvelib/resolver.py`, `prepare_linked_requirements_more`;
# from pip 24 the install command does that after its dry-run exit). The resolution (pip's JSON report) is
# cached like a venv; tests/docker reads it without the network.
GPU_IMAGE = "trainer-gpu"
RESOLVER_PIP = "pip==25.3"


def resolution(name: str = GPU_IMAGE) -> Path:
    """Where the dry-run resolution of requirements/<name>.txt lives for the current files (made or not)."""
    h = hashlib.sha256()
    for part in (_BUILDER_VERSION, f"{sys.version_info.major}.{sys.version_info.minor}",
                 requirement_file(name).read_text(), (REQUIREMENTS / "constraints.txt").read_text()):
        h.update(part.encode() + b"\0")
    return cache_dir() / f"{name}-{h.hexdigest()[:12]}.resolved.json"


def resolve(name: str = GPU_IMAGE, log=print) -> Path:
    """pip's resolution of requirements/<name>.txt under the constraints, for Linux x86_64 and this Python,
    without installing or downloading the wheels. Needs the package index."""
    target = resolution(name)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log(f"image {name}: resolving requirements/{name}.txt (a dry run: metadata only)")
    resolver = cache_dir() / f"resolver-{RESOLVER_PIP.replace('==', '-')}"
    if not (resolver / STAMP).is_file():
        shutil.rmtree(resolver, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(resolver)], check=True)
        subprocess.run([str(resolver / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", RESOLVER_PIP], check=True)
        (resolver / STAMP).write_text(RESOLVER_PIP)
    partial = target.with_suffix(".partial")
    proc = subprocess.run(
        [str(resolver / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--use-feature=fast-deps", "--report", str(partial),
         "-r", str(requirement_file(name)), "-c", str(REQUIREMENTS / "constraints.txt")],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"image {name}: pip's dry run of requirements/{name}.txt failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    partial.rename(target)
    log(f"image {name}: resolved in {time.monotonic() - start:.0f} s")
    return target


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == [GPU_IMAGE] or argv == [GPU_IMAGE]:
        resolve()
        return 0
    names = (argv if argv is not None else sys.argv[1:]) or list(VENVS)
    for name in names:
        if name not in VENVS:
            print(f"error: unknown image venv ({name}): pick from {', '.join(VENVS)}", file=sys.stderr)
            return 2
    for name in names:
        p = ready(name)
        print(f"image venv {name}: {p} (cached)" if p else "", end="\n" if p else "")
        if not p:
            build(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
