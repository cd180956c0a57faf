"""`make images`: builds the images with a Docker engine, and says so in one line when there is none.

The engine is played by a `docker` script on PATH (none runs here: the machine has only the client), which
records each call; the Makefile's own logic runs for real under `make`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.config import KEY_NAMES

ROOT = Path(__file__).resolve().parents[2]


def fake_docker(bin_dir: Path, engine: bool) -> Path:
    log = bin_dir / "docker.log"
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        f'if [ "$1" = info ]; then exit {0 if engine else 1}; fi\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return log


def make_images(bin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    make = shutil.which("make")
    assert make, "make is needed"
    return subprocess.run([make, "-s", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_without_an_engine_one_line_and_non_zero(tmp_path):
    log = fake_docker(tmp_path, engine=False)
    proc = make_images(tmp_path)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("make images:")]
    assert ours == [
        "make images: no Docker engine answers ('docker info' failed): start the Docker daemon, or point "
        "DOCKER_HOST at one, and run make images again"
    ], proc.stderr
    assert log.read_text().splitlines() == ["info"]  # nothing was built


def test_without_a_docker_command(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": f"{empty}"}
    make = shutil.which("make")
    proc = subprocess.run([make, "-s", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "make images: no docker command" in proc.stderr


KEYS = {"trainer": "image.trainer", "sidecar": "image.sidecar", "tensorboard": "image.tensorboard",
        "trainer-gpu": "image.trainerGpu"}


@pytest.mark.parametrize("image", list(KEYS))
def test_with_an_engine_builds_each_image_with_the_dev_stacks_tag(tmp_path, image):
    log = fake_docker(tmp_path, engine=True)
    proc = make_images(tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    tag = KEY_NAMES[KEYS[image]].default  # what the dev stack pulls (kind load docker-image ...)
    assert f"build -f docker/{image}.Dockerfile -t {tag} ." in calls
    assert calls[0] == "info" and len(calls) == 1 + len(KEYS)
