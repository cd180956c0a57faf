"""The TF Serving stand-in against TF Serving's REST API document (tensorflow/serving,
`tensorflow_serving/g3doc/api_rest.md`): every request form the document gives for `predict` (row and columnar,
one input and several), and every error TF Serving answers a bad predict request with (the texts of
`tensorflow_serving/util/json_tensor.cc` and `model_servers/http_rest_api_handler.cc`). Real SavedModels,
real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from demo.serving import ModelServer

W = np.linspace(-1, 1, 784 * 10, dtype=np.float32).reshape(784, 10)


class OneInput(tf.Module):
    """Like our servable: `images` float32 [None,28,28] -> `probabilities` [None,10]."""

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32)])
    def serve(self, images):
        return {"probabilities": tf.nn.softmax(tf.reshape(images, [-1, 784]) @ W)}


class TwoInputs(tf.Module):
    """`a` float32 [None,2] and `b` int64 [None] -> `total` [None] and `twice` [None,2]."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.int64)])
    def serve(self, a, b):
        return {"total": tf.reduce_sum(a, 1) + tf.cast(b, tf.float32), "twice": 2 * a}


def expected_one(images: np.ndarray) -> np.ndarray:
    logits = images.reshape(-1, 784) @ W
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    out = {}
    for name, module in (("one", OneInput()), ("two", TwoInputs())):
        base = tmp_path_factory.mktemp(name)
        tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
        out[name] = ModelServer(name, base, poll_seconds=60).start()
    yield out
    for server in out.values():
        server.stop()


def post(server, body, path: str | None = None) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = server.url + (path or f"/v1/models/{server.name}:predict")
    request = urllib.request.Request(url, data=raw, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


IMAGES = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)


@pytest.mark.parametrize("form", ["row plain", "row objects", "columnar plain", "columnar object"])
def test_one_input_every_form(servers, form):
    """api_rest.md: with one named input, a row is the value itself or an object keyed by the input name;
    `inputs` is the tensor itself or an object of input name -> tensor."""
    rows = IMAGES.tolist()
    body = {"row plain": {"instances": rows},
            "row objects": {"instances": [{"images": r} for r in rows]},
            "columnar plain": {"inputs": rows},
            "columnar object": {"inputs": {"images": rows}}}[form]
    status, answer = post(servers["one"], body)
    assert status == 200, answer
    key = "predictions" if form.startswith("row") else "outputs"
    assert list(answer) == [key]  # one output tensor: its name is left out
    np.testing.assert_allclose(np.array(answer[key]), expected_one(IMAGES), rtol=1e-3)


def test_several_inputs_rows_and_columns(servers):
    a, b = [[1.0, 2.0], [3.0, 4.0]], [10, 20]
    status, answer = post(servers["two"], {"instances": [{"a": a[0], "b": b[0]}, {"a": a[1], "b": b[1]}]})
    assert status == 200, answer
    # Several output tensors: one object per row, keyed by output name.
    assert answer == {"predictions": [{"total": 13.0, "twice": [2.0, 4.0]}, {"total": 27.0, "twice": [6.0, 8.0]}]}
    status, answer = post(servers["two"], {"inputs": {"a": a, "b": b}, "signature_name": "serving_default"})
    assert status == 200, answer
    assert answer == {"outputs": {"total": [13.0, 27.0], "twice": [[2.0, 4.0], [6.0, 8.0]]}}


ROW = IMAGES[0].tolist()

ERRORS = [
    # (model, body, status, the whole error text or its start ("...": the rest varies))
    ("one", b"", 400, "JSON Parse error: The document is empty"),
    ("one", b"{instances: 1}", 400, "JSON Parse error: ..."),
    ("one", [1, 2], 400, "JSON Value: [1,2] Is not object"),
    ("one", {"signature_name": 7, "instances": [ROW]}, 400,
     "JSON Value: ... not formatted correctly. 'signature_name' key must be a string value."),
    ("one", {"signature_name": "classify", "instances": [ROW]}, 400,
     'Serving signature name: "classify" not found in signature def'),
    ("one", {"instances": [ROW], "inputs": [ROW]}, 400,
     "JSON Value: ... Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
    ("one", {"instances": {"images": [ROW]}}, 400, "JSON Value: ... Expecting 'instances' to be an list/array"),
    ("one", {"instances": []}, 400, "JSON Value: {\"instances\":[]} No values in 'instances' array"),
    ("one", {"examples": [ROW]}, 400, "Missing 'inputs' or 'instances' key"),
    ("two", {"instances": [[1.0, 2.0]]}, 400, "instances is a plain list, but expecting list of objects as "
     "multiple input tensors required as per tensorinfo_map"),
    ("one", {"instances": [{"images": ROW}, ROW]}, 400, "Expecting object but got list at item 1 of input list"),
    ("one", {"instances": [ROW, {"images": ROW}]}, 400,
     "Expecting value/list but got object at item 1 of input list"),
    ("one", {"instances": [{"image": ROW}]}, 400, "Failed to process element: 0 key: image of 'instances' list. "
     "Error: INVALID_ARGUMENT: JSON object: does not have named input: image"),
    ("two", {"instances": [{"a": [1.0, 2.0]}]}, 400, "Failed to process element: 0 of 'instances' list. "
     "JSON object: {\"a\":[1.0,2.0]} keys must be equal to: a,b"),
    ("one", {"instances": [ROW, ROW[:1]]}, 400, "Failed to process element: 1 of 'instances' list. "
     "Error: INVALID_ARGUMENT: Expecting tensor size: 784 but got: 28"),
    ("one", {"instances": [ROW, sum(ROW, [])]}, 400, "Failed to process element: 1 of 'instances' list. "
     "Error: INVALID_ARGUMENT: Expecting shape [28,28] but got: [784]"),
    ("one", {"instances": [[ROW[0], ROW[1][:27]]]}, 400, "Failed to process element: 0 of 'instances' list. "
     "Error: INVALID_ARGUMENT: Encountered list at unexpected size: 27 at level: 1 expected size: 28"),
    ("one", {"instances": [[[0.5, [0.5]]]]}, 400, "Failed to process element: 0 of 'instances' list. "
     "Error: INVALID_ARGUMENT: Encountered list at unexpected level: 2 expected < 2"),
    ("one", {"instances": [[[[0.5], 0.5]]]}, 400, "Failed to process element: 0 of 'instances' list. "
     "Error: INVALID_ARGUMENT: JSON Value: 0.5 found at incorrect level: 3 in the JSON DOM. Expected at level: 3"),
    ("one", {"inputs": [[["x"]]]}, 400, "JSON Value: \"x\" Type: String is not of expected type: float"),
    ("two", {"inputs": [[1.0, 2.0]]}, 400, "inputs is a plain value/list, but expecting an object as multiple "
     "input tensors required as per tensorinfo_map"),
    ("two", {"inputs": {"a": [[1.0, 2.0]]}}, 400, "Missing named input: b in 'inputs' object."),
    ("two", {"inputs": {"a": [[1.0, 2.0]], "b": [1.5]}}, 400,
     "JSON Value: 1.5 Type: Number is not of expected type: int64"),
]


@pytest.mark.parametrize("model,body,status,error", ERRORS, ids=[e[3][:60] for e in ERRORS])
def test_bad_requests_get_tf_servings_errors(servers, model, body, status, error):
    got, answer = post(servers[model], body)
    assert got == status and list(answer) == ["error"], answer
    if "..." in error:
        head, _, tail = error.partition("...")
        assert answer["error"].startswith(head) and answer["error"].endswith(tail), answer["error"]
    else:
        assert answer["error"] == error


def test_unknown_model_version_and_path(servers):
    one = servers["one"]
    assert post(one, {"instances": [ROW]}, "/v1/models/two:predict") == (
        404, {"error": "Servable not found for request: Latest(two)"})
    assert post(one, {"instances": [ROW]}, "/v1/models/one/versions/9:predict") == (
        404, {"error": "Servable not found for request: Specific(one, 9)"})
    assert post(one, {"instances": [ROW]}, "/v1/models/one:explain") == (
        400, {"error": "Malformed request: POST /v1/models/one:explain"})
    status, answer = post(one, {"instances": [ROW]}, "/v1/models/one/versions/1:predict")
    assert status == 200 and len(answer["predictions"]) == 1


def test_wrong_shape_for_the_signature_is_a_bad_request(servers):
    status, answer = post(servers["one"], {"instances": [ROW[0]]})  # rows of 28 values, not 28x28 images
    assert status == 400 and "input 'images' has shape [1,28]" in answer["error"], answer


def get(server, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_model_status_of_an_unknown_model_or_version(servers):
    """get_model_status_impl.cc: NotFound (404) with its own texts, not the predict path's "Servable not found"."""
    one = servers["one"]
    assert get(one, "/v1/models/one")[0] == 200
    assert get(one, "/v1/models/mnist") == (404, {"error": "Could not find any versions of model mnist"})
    assert get(one, "/v1/models/one/versions/7") == (404, {"error": "Could not find version 7 of model one"})
    assert get(one, "/v1/models/mnist/versions/1") == (404, {"error": "Could not find version 1 of model mnist"})


def test_model_status_before_any_version_is_loaded(tmp_path):
    """The right name while the model's folder is still empty: TF Serving knows no version of it yet."""
    with ModelServer("mnist", tmp_path / "mnist", poll_seconds=60) as server:
        assert get(server, "/v1/models/mnist") == (404, {"error": "Could not find any versions of model mnist"})


def test_classify_and_regress_on_a_predict_signature(servers):
    """:classify and :regress: the body is checked first (json_tensor.cc), then the servable, then the signature
    (classifier.cc / regressor.cc with TF Serving's default --enable_signature_method_name_check=false)."""
    one, two = servers["one"], servers["two"]
    example = {"examples": [{"x": [1.0, 2.0]}]}
    status, answer = post(one, example, "/v1/models/one:classify")
    head = 'No classification inputs found in SignatureDef: inputs {\n  key: "images"\n'
    assert status == 400 and answer["error"].startswith(head), answer
    assert 'method_name: "tensorflow/serving/predict"' in answer["error"]
    status, answer = post(one, example, "/v1/models/one/versions/1:regress")
    assert status == 400 and answer["error"].startswith("No regression inputs found in SignatureDef: inputs {")
    assert post(two, example, "/v1/models/two:classify") == (400, {"error": "Expected one input Tensor."})
    assert post(one, {**example, "signature_name": "other"}, "/v1/models/one:regress") == (
        400, {"error": "No signature was found with the name: other"})
    assert post(one, example, "/v1/models/mnist:classify") == (
        404, {"error": "Servable not found for request: Latest(mnist)"})
    # The body before the servable: json_tensor.cc's text names classify for both methods.
    assert post(one, {"instances": [ROW]}, "/v1/models/mnist:regress") == (
        400, {"error": "JSON Value: " + json.dumps({"instances": [ROW]}, separators=(",", ":"))[:256]
                       + " When method is classify, key 'examples' is expected and was not found"})
    assert post(one, {"examples": []}, "/v1/models/one:classify") == (
        400, {"error": "JSON Value: {\"examples\":[]} 'examples' value is an empty array"})
    assert post(one, {"examples": [1]}, "/v1/models/one:classify") == (
        400, {"error": "Example must be JSON object but got JSON Number"})


def test_the_answers_are_in_the_operations_table():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs/operations.md").read_text()
    assert "400 `No classification inputs found in SignatureDef: inputs {" in page
    assert ("`Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict`") in page


def test_classify_with_the_method_name_check(tmp_path):
    module = OneInput()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    with ModelServer("one", tmp_path, poll_seconds=60, method_name_check=True) as server:
        assert post(server, {"examples": [{}]}, "/v1/models/one:classify") == (400, {
            "error": "Expected classification signature method_name to be tensorflow/serving/classify. "
                     "Was: tensorflow/serving/predict"})
        assert post(server, {"examples": [{}]}, "/v1/models/one:regress") == (400, {
            "error": "Expected regression signature method_name to be tensorflow/serving/regress. "
                     "Was: tensorflow/serving/predict"})


def test_metrics_with_tf_servings_names_when_the_monitoring_config_turns_them_on(tmp_path):
    """The stack's own monitoring config (infra.serving) switches the stand-in's endpoint on, as it does TF
    Serving's; every predict is counted under its status, and its latency lands in TF Serving's buckets."""
    from prometheus_client.parser import text_string_to_metric_families

    from demo.serving import LATENCY_BUCKETS_US, monitoring_path
    from infra.serving import MONITORING_PATH, monitoring_config

    config = tmp_path / "monitoring.config"
    config.write_text(monitoring_config())
    assert monitoring_path(config.read_text()) == MONITORING_PATH
    assert monitoring_path('prometheus_config { enable: false, path: "/m" }') is None
    module = OneInput()
    tf.saved_model.save(module, str(tmp_path / "m" / "1"), signatures={"serving_default": module.serve})
    with ModelServer("one", tmp_path / "m", poll_seconds=60, metrics_path=MONITORING_PATH) as server:
        assert post(server, {"instances": IMAGES.tolist()})[0] == 200
        assert post(server, {"instances": IMAGES.tolist()})[0] == 200
        assert post(server, {"instances": [[1.0]]})[0] == 400
        assert post(server, {"instances": IMAGES.tolist()}, "/v1/models/nope:predict")[0] == 404
        with urllib.request.urlopen(server.url + MONITORING_PATH, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    # The counter as TF Serving's exporter writes it: its own name, no `_total` (the parser would add one).
    lines = text.splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert ':tensorflow:serving:request_count{model_name="one",status="OK"} 2' in lines
    assert ':tensorflow:serving:request_count{model_name="one",status="INVALID_ARGUMENT"} 1' in lines
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"} 1' in lines
    latency = ":tensorflow:serving:request_latency"
    labels = (("API", "predict"), ("entrypoint", "REST"), ("model_name", "one"))
    assert samples[(latency + "_count", labels)] == 3
    assert samples[(latency + "_sum", labels)] > 0
    assert samples[(latency + "_bucket", (*labels[:2], ("le", "+Inf"), labels[2]))] == 3
    assert len([k for k in samples if k[0] == latency + "_bucket" and ("model_name", "one") in k[1]]) == len(
        LATENCY_BUCKETS_US) + 1
    # Without the config, as TF Serving without --monitoring_config_file: no such path.
    with ModelServer("one", tmp_path / "m", poll_seconds=60) as server:
        status, _ = get(server, MONITORING_PATH)
        assert status == 400


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stand_in_takes_every_flag_the_stacks_serving_container_passes(stack):
    """The stand-in runs where TF Serving would (the demo, the real-node e2e's image): a flag the stack adds
    to `tensorflow_model_server` that the stand-in does not know would crash the serving pod (exit 2)."""
    from demo.serving import flags
    from tests.render.renders import RENDERS

    deployment = RENDERS(stack).one("Deployment", "serving")
    [server] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                if c["command"] == ["tensorflow_model_server"]]
    args = flags().parse_args(server["args"])
    assert args.model_base_path and args.grpc_channel_arguments.startswith("grpc.max_receive_message_length=")
