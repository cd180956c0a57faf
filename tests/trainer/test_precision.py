"""`train --precision` and `--xla` for real: one process per precision on the digits (file:/// stores, no
S3), each reaching 0.97 test accuracy with its exported float32 model; and the choices the trainer makes by
device (the precision's default, the collectives' implementation), which need no GPU to check."""

from __future__ import annotations

import subprocess
import sys

import pytest

from demo.supervisor import last_json, trainer_env
from tests.conftest import ROOT
from tests.helpers.process import stdout_json
from trainer import distribute

# Few epochs keep the three runs cheap (16-bit arithmetic is emulated on CPUs, several times slower than
# float32); 10 still leave a margin above 0.97 on the digits (8 gave 0.978-0.981 here).
EPOCHS = 10


def trainer(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, env=trainer_env({}, **env),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data_url(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('precision')}/data"
    proc = trainer("prepare-data", "--source", "digits", "--data-url", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return url


@pytest.mark.slow
@pytest.mark.parametrize("precision, flags", [
    (None, []),  # the default, with no GPU visible: float32
    ("mixed_float16", ["--precision", "mixed_float16"]),
    ("mixed_bfloat16", ["--precision", "mixed_bfloat16", "--xla"]),  # XLA where 16-bit CPU kernels are slowest
])
def test_each_precision_trains_to_97_percent(data_url, tmp_path, precision, flags):
    proc = trainer("train", "--epochs", str(EPOCHS), *flags, "--data-url", data_url,
                   "--run-url", f"file://{tmp_path}/run", "--model-url", f"file://{tmp_path}/models",
                   CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = last_json(proc.stdout.splitlines())
    assert result["precision"] == (precision or "float32")
    assert result["xla"] == ("--xla" in flags) and result["gpus"] == 0
    # Loss scaling where float16 needs it only: bfloat16 has float32's exponent range.
    assert (result["loss_scale"] is not None) == (precision == "mixed_float16")
    if result["loss_scale"] is not None:
        assert result["loss_scale"] >= 1.0
    assert result["steps"] == EPOCHS * (1437 // 64)
    # The exported SavedModel, scored on the 360 test images as `evaluate` scores it.
    assert result["test_count"] == 360 and result["accuracy"] >= 0.97, result
    assert result["model_version"] == 1


def test_a_precision_outside_the_choices_is_refused():
    proc = trainer("train", "--precision", "float16", "--data-url", "file:///nowhere", "--run-url",
                   "file:///nowhere", "--model-url", "file:///nowhere")
    assert proc.returncode == 2
    assert "--precision: invalid choice: 'float16'" in proc.stderr


def test_default_precision_and_collectives_follow_the_gpu():
    assert distribute.resolve_precision(None, gpus=0) == "float32"
    assert distribute.resolve_precision(None, gpus=1) == "mixed_float16"
    assert distribute.resolve_precision("mixed_bfloat16", gpus=0) == "mixed_bfloat16"
    assert distribute.resolve_precision("float32", gpus=8) == "float32"
    assert distribute.communication(0) == "RING" and distribute.communication(1) == "NCCL"
    assert distribute.PRECISIONS == ("float32", "mixed_float16", "mixed_bfloat16")


def test_the_model_computes_in_the_policy_and_keeps_float32_weights_and_logits():
    script = (
        "import json, os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\nimport numpy as np\n"
        "from trainer import model\nout = {}\n"
        "for p in ('float32', 'mixed_float16', 'mixed_bfloat16'):\n"
        "    net = model.build(0, p)\n"
        "    y = net(np.zeros((2, 28, 28, 1), np.float32))\n"
        "    out[p] = {'compute': net.get_layer('conv1').compute_dtype, 'logits': str(y.dtype.name),\n"
        "              'weights': sorted({str(w.dtype) for w in net.get_weights()}), 'count': net.count_params()}\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = stdout_json(proc)
    assert {p: o["compute"] for p, o in out.items()} == {
        "float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
    for o in out.values():  # the same weights under every policy: a checkpoint's shapes and the export agree
        assert o["logits"] == "float32" and o["weights"] == ["float32"] and o["count"] == 93962
