"""Serving loads what training exports.

The rule (docs/trainer.md, "Serving and training versions"): the TensorFlow minor version that the pinned
`tensorflow/serving` image is built on is the one pinned in requirements/serving-tf.txt, and a SavedModel
exported by the trainer image's TensorFlow must load and answer `serving_default` under it with the same
results. TF Serving itself cannot be installed here (no Docker engine, not on PyPI or Debian), so this is the
stand-in, said plainly: TF Serving's C++ server links the TensorFlow core of its own version, and the same core
(TF 2.20's op registry and kernels, through its Python API) loads the export here. It catches what goes wrong
across versions: an op, attribute or signature the older runtime does not know.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from infra.config import KEY_NAMES
from render import render
from tests.helpers.process import stdout_json
from tests.images import commands, venvs

ROOT = venvs.ROOT
PIN = re.compile(r"^tensorflow(?:[-_]cpu)?==(\d+)\.(\d+)\.\d+\s*$", re.M)

EXPORT = """
import json, sys
import numpy as np
import tensorflow as tf
from trainer import model
net = model.build(seed=3)
model.export(net, sys.argv[1])
x = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
np.save(sys.argv[1] + "-inputs.npy", x)
y = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](images=tf.constant(x))["probabilities"]
np.save(sys.argv[1] + "-outputs.npy", y.numpy())
print(json.dumps({"tf": tf.__version__}))
"""

LOAD = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
fn = loaded.signatures["serving_default"]
inputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_input_signature[1].items()}
outputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()}
x = np.load(sys.argv[1] + "-inputs.npy")
y = fn(images=tf.constant(x))["probabilities"].numpy()
np.save(sys.argv[1] + "-served.npy", y)
print(json.dumps({"tf": tf.__version__, "inputs": inputs, "outputs": outputs}))
"""


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


def pinned_tf(requirements: str) -> tuple[int, int]:
    m = PIN.search((ROOT / "requirements" / requirements).read_text())
    assert m, f"requirements/{requirements} pins no tensorflow"
    return int(m.group(1)), int(m.group(2))


def serving_tag(image: str) -> tuple[int, int]:
    repo, _, tag = image.rpartition(":")
    assert repo.endswith("tensorflow/serving") and re.fullmatch(r"\d+\.\d+\.\d+(-\w+)?", tag), (
        f"image.serving is {image}: pin a tensorflow/serving release tag (MAJOR.MINOR.PATCH), which names the "
        "TensorFlow it is built on"
    )
    return minor(tag)


def test_serving_tf_pin_matches_the_serving_image_of_every_stack():
    assert pinned_tf("serving-tf.txt") == serving_tag(KEY_NAMES["image.serving"].default)
    for stack in ("dev", "prod"):
        rendered = render(stack)
        served = [c for c in commands.collect(rendered) if c.argv[:1] == ["tensorflow_model_server"]]
        assert served, f"{stack}: no TF Serving container in the render"
        for c in served:
            assert serving_tag(c.ref) == pinned_tf("serving-tf.txt"), (
                f"{stack} {c.where} runs {c.ref}, but requirements/serving-tf.txt pins another TensorFlow: "
                "pin the serving image's TensorFlow there so the export is checked against it"
            )
    # The trainer may be newer than serving (not older): serving runtimes do not load newer ops in general.
    assert pinned_tf("trainer.txt") >= pinned_tf("serving-tf.txt")


def run(venv: str, script: str, *args: str, cwd) -> dict:
    python = venvs.ready(venv)
    if python is None:
        pytest.fail(f"venv {venv} is missing ({venvs.path(venv)}): `make image-venvs` (part of `make test`) builds it")
    proc = subprocess.run(
        [str(python / "bin" / "python"), "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(cwd)},
    )
    assert proc.returncode == 0, f"{venv}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return stdout_json(proc)


@pytest.mark.slow
def test_serving_runtime_loads_and_runs_the_trainers_export(tmp_path):
    # Exported in the trainer image (its files and venv), loaded in the serving runtime's TensorFlow.
    app = commands.image_files("trainer", tmp_path / "app")
    exported = run("trainer", EXPORT, str(tmp_path / "model"), cwd=app)
    served = run("serving-tf", LOAD, str(tmp_path / "model"), cwd=tmp_path)
    assert minor(exported["tf"]) == pinned_tf("trainer.txt")
    assert minor(served["tf"]) == pinned_tf("serving-tf.txt")
    # The signature TF Serving's REST API exposes: {"instances": [[[...28...]...28...]]} -> probabilities.
    assert served["inputs"] == {"images": ["float32", [None, 28, 28]]}
    assert served["outputs"] == {"probabilities": ["float32", [None, 10]]}
    expected = np.load(tmp_path / "model-outputs.npy")
    got = np.load(tmp_path / "model-served.npy")
    assert got.shape == (5, 10) and np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
