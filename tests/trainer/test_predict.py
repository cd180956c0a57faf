"""`predict` (a real process, without TensorFlow) against the TF Serving stand-in (`demo.serving`) over a real
exported SavedModel; and the stand-in's REST behaviour that `predict` and the demo rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from demo.s3server import free_port
from demo.serving import ModelServer
from tests.conftest import ROOT, trainer_env
from tests.helpers.process import stdout_json
from tests.helpers.s3 import module_bucket
from trainer import data, model
from trainer.prepare import prepare
from trainer.store import open_store


@pytest.fixture(scope="module")
def served(s3_server, tmp_path_factory):
    """A dataset on S3, an exported (untrained) model as version 1 under a base path, and the stand-in
    serving it from this process. `expected_wrong`: its mistakes on the first test images, computed here."""
    with module_bucket(s3_server, "predict") as bucket:
        data_store = open_store(f"s3://{bucket}/data", "DATA_URL")
        prepare("digits", data_store)
        x, y = data.test_arrays(data_store)
        base = tmp_path_factory.mktemp("models") / "mnist"
        net = model.build(5)
        model.export(net, base / "1")
        # What predict sends: pixels / 255 rounded to 4 decimals.
        images = np.round(x.astype(np.float32) / 255.0, 4)
        wrong = tf.nn.softmax(net(images[..., None], training=False)).numpy().argmax(-1) != y
        with ModelServer("mnist", base, poll_seconds=0.2) as server:
            yield {"url": server.url, "data_url": data_store.url, "wrong": wrong, "base": base,
                   "server": server, "s3_server": s3_server}


def predict(served, *args: str, block_tf: bool = True) -> subprocess.CompletedProcess:
    """`python -m trainer predict ...` in a process where importing TensorFlow or Keras fails."""
    code = (
        "import sys\n"
        + ("sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n" if block_tf else "")
        + "from trainer.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
        "('tensorflow', 'keras'))\n"
        "print('imported:', heavy, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = trainer_env(served["s3_server"], DATA_URL=served["data_url"])
    return subprocess.run([sys.executable, "-c", code, "predict", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url: str, body) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_error_rate_is_the_models(served):
    proc = predict(served, "--server", served["url"], "--model", "mnist", "--num-tests", "50",
                   "--batch-size", "20")
    assert proc.returncode == 0, proc.stderr
    assert "imported: []" in proc.stderr  # no TensorFlow, no Keras
    result = stdout_json(proc)
    assert result["count"] == 50 and result["model_version"] == 1 and result["model"] == "mnist"
    assert result["errors"] == int(served["wrong"][:50].sum())
    assert result["error_rate"] == pytest.approx(result["errors"] / 50)
    assert "error rate" in proc.stdout.splitlines()[0]


def test_num_tests_is_capped_at_the_test_split(served):
    host_port = served["url"].removeprefix("http://")  # host:port works too
    proc = predict(served, "--server", host_port, "--num-tests", "100000", "--batch-size", "128", block_tf=False)
    assert "imported: []" in proc.stderr  # predict loads neither TensorFlow nor Keras on its own
    assert proc.returncode == 0, proc.stderr
    result = stdout_json(proc)
    assert result["count"] == 360 and result["errors"] == int(served["wrong"].sum())


NO_VERSION = ("error: no version of the model is loaded in the model server yet ({model}): check that training "
              "finished and published a version under MODEL_URL, and the serving pod's sync-model log (kubectl "
              "logs deploy/serving -c sync-model); if both are fine, check --model: it must match TF Serving's "
              "--model_name (Could not find any versions of model {model})")


def test_the_line_is_in_the_operations_table():
    assert NO_VERSION.format(model="mnist") in (ROOT / "docs/operations.md").read_text()


def test_unknown_model(served):
    """TF Serving's model status cannot tell a wrong name from one with no version yet: both are named."""
    proc = predict(served, "--server", served["url"], "--model", "fashion")
    assert proc.returncode == 2
    assert NO_VERSION.format(model="fashion") in proc.stderr


def test_right_model_with_no_version_loaded_yet(served, tmp_path):
    """Serving is up but its model folder is still empty (training not done, or the sidecar not synced)."""
    with ModelServer("mnist", tmp_path / "mnist", poll_seconds=60) as empty:
        proc = predict(served, "--server", empty.url, "--model", "mnist")
    assert proc.returncode == 2, proc.stderr
    assert NO_VERSION.format(model="mnist") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_server(served):
    url = f"http://127.0.0.1:{free_port()}"
    proc = predict(served, "--server", url)
    assert proc.returncode == 2
    assert f"error: cannot reach the model server ([Errno 111] Connection refused) ({url})" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_server_and_count(served):
    proc = predict(served, "--server", "ftp://x")
    assert proc.returncode == 2 and "--server is not an http(s) address" in proc.stderr
    proc = predict(served, "--server", served["url"], "--num-tests", "0")
    assert proc.returncode == 2 and "--num-tests must be at least 1" in proc.stderr


def test_status_and_metadata_as_tf_serving(served):
    status, body = get(f"{served['url']}/v1/models/mnist")
    assert status == 200
    assert body["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                             "status": {"error_code": "OK", "error_message": ""}}]
    status, body = get(f"{served['url']}/v1/models/mnist/metadata")
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["images"]["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert [d["size"] for d in sig["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert get(f"{served['url']}/v1/models/other")[0] == 404
    assert get(f"{served['url']}/v1/models/mnist/versions/7")[0] == 404


def test_predict_formats_and_bad_requests(served):
    url = f"{served['url']}/v1/models/mnist:predict"
    image = np.zeros((28, 28)).tolist()
    status, body = post(url, {"instances": [image, image]})
    assert status == 200 and np.asarray(body["predictions"]).shape == (2, 10)  # one output: bare rows
    status, body = post(f"{served['url']}/v1/models/mnist/versions/1:predict", {"inputs": [image]})
    assert status == 200 and np.asarray(body["outputs"]).shape == (1, 10)
    np.testing.assert_allclose(np.asarray(body["outputs"]).sum(-1), 1.0, rtol=1e-5)
    for bad in ({"instances": [[1.0, 2.0]]}, {"instances": []}, {"rows": [image]}, [image]):
        status, body = post(url, bad)
        assert status == 400 and body["error"], bad
    status, body = post(url, {"instances": [image], "signature_name": "nope"})
    assert status == 400 and "nope" in body["error"]


def test_a_new_version_is_picked_up(served, tmp_path):
    base, server = served["base"], served["server"]
    shutil.copytree(base / "1", tmp_path / "2")
    (base / "3").mkdir()  # no saved_model.pb: not a version (a copy in progress)
    shutil.copytree(tmp_path / "2", base / "2")
    deadline = time.monotonic() + 30
    while get(f"{served['url']}/v1/models/mnist")[1]["model_version_status"][0]["version"] != "2":
        assert time.monotonic() < deadline, server.load_error
        time.sleep(0.1)
    proc = predict(served, "--server", served["url"], "--num-tests", "10")
    assert proc.returncode == 0 and stdout_json(proc)["model_version"] == 2
