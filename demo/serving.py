"""A stand-in for TF Serving's REST API, for the tests and the local demo.

It stands in for TensorFlow Serving (`tensorflow_model_server`), which cannot be installed here: no Docker
engine, and no binary on PyPI or Debian. It does the part the project relies on, the way TF Serving does it:

- serves the SavedModels under `--model_base_path`, laid out as `<base>/<integer version>/saved_model.pb ...`,
  polling the folder every `--file_system_poll_wait_seconds` and switching to the newest version (TF Serving's
  default "latest 1" version policy); a folder without `saved_model.pb` is not a version;
- `GET  /v1/models/<name>`                       model status (`model_version_status`, state AVAILABLE)
- `GET  /v1/models/<name>/metadata`              the signature's inputs and outputs
- `POST /v1/models/<name>[/versions/<v>]:predict` in row (`instances`) or columnar (`inputs`) format ->
  `{"predictions": ...}` / `{"outputs": ...}`, by the rules of TF Serving's REST API document
  (tensorflow/serving, `tensorflow_serving/g3doc/api_rest.md`, "Predict API" and "JSON mapping"): rows are plain
  values when the signature has one input, or objects keyed by input name (always accepted, required with
  several inputs); columns are a plain value (one input) or an object of input name -> tensor; one output
  tensor is answered without its name, several as objects;
- bad requests get the error text TF Serving gives (`tensorflow_serving/util/json_tensor.cc`,
  `FillPredictRequestFromJson`; `model_servers/http_rest_api_handler.cc`), as `{"error": "..."}` with 400
  (InvalidArgument), 404 (unknown model or version) or 501 (a dtype JSON cannot carry). Where TF Serving
  quotes a JSON value it is shown here as compact JSON cut at 256 characters (rapidjson's layout differs).
  A tensor of the wrong shape for the signature fails when TF Serving runs the graph, with TensorFlow's own
  text; the stand-in checks the shape first and says so in its own words (also 400).

Run: `python -m demo.serving --model_name mnist --model_base_path /models/mnist --rest_api_port 8501`
(TF Serving's own flag names). It prints `serving <name> at http://host:port` once it listens.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$"
)


class RestError(Exception):
    """A request TF Serving refuses: its error text and HTTP status (400 for InvalidArgument)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


# TensorFlow's DataTypeString names (tensorflow/core/framework/types.cc), which TF Serving's errors print.
_TF_NAMES = {"float32": "float", "float64": "double"}
_INT_RANGES = {"int8": 32, "int16": 32, "int32": 32, "uint8": 32, "int64": 64}


def _debug(value) -> str:
    """A JSON value as TF Serving quotes it in errors: compact, at most 256 characters."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)[:256]


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, dtype: str):
    """One JSON value as an element of a tensor of `dtype` (a numpy dtype name), or the error TF Serving
    gives (AddValueToTensor)."""
    def type_error():
        return RestError(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
                         f"{_TF_NAMES.get(dtype, dtype)}")

    if dtype in ("float32", "float64"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise type_error()
        return value
    if dtype in _INT_RANGES or dtype in ("uint32", "uint64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error()
        low, high = ((0, 2**32 - 1) if dtype == "uint32" else (0, 2**64 - 1) if dtype == "uint64"
                     else (-2**(_INT_RANGES[dtype] - 1), 2**(_INT_RANGES[dtype] - 1) - 1))
        if not low <= value <= high:
            raise type_error()
        return value
    if dtype == "bool":
        if not isinstance(value, bool):
            raise type_error()
        return value
    if dtype in ("object", "bytes", "str"):  # DT_STRING
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as e:
                raise RestError("Unable to base64 decode") from e
        if isinstance(value, dict):
            raise RestError(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
        if not isinstance(value, str):
            raise type_error()
        return value.encode()
    raise RestError(f"Conversion of JSON Value: {_debug(value)} to type: {dtype}", status=501)


def _tensor(value, dtype: str):
    """A JSON value as a dense tensor (numpy array): its shape is read along the first elements, then every
    list must match it and every leaf sit at the last level (GetDenseTensorShape, FillTensorProto)."""
    import numpy as np

    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    rank, flat = len(shape), []

    def fill(v, level: int) -> None:
        if not isinstance(v, list):
            if level != rank:
                raise RestError(f"JSON Value: {_debug(v)} found at incorrect level: {level + 1} in the JSON DOM. "
                                f"Expected at level: {rank}")
            flat.append(_leaf(v, dtype))
            return
        if level >= rank:
            raise RestError(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(v) != shape[level]:
            raise RestError(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                            f"expected size: {shape[level]}")
        if level == rank - 1 and dtype in ("float32", "float64") and all(
                type(x) in (int, float) for x in v):
            flat.extend(v)  # the common case, a row of numbers, without a call per number
            return
        for item in v:
            fill(item, level + 1)

    fill(value, 0)
    np_dtype = object if dtype in ("object", "bytes", "str") else dtype
    return np.array(flat, dtype=np_dtype).reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def parse_predict(raw: bytes, signatures: dict[str, dict[str, str]]):
    """A predict request body -> (signature name, "row" or "columnar", {input name: numpy array}), by TF
    Serving's rules (json_tensor.cc, `FillPredictRequestFromJson`). `signatures`: signature name -> {input
    name: numpy dtype name}. Raises RestError with TF Serving's text."""
    import numpy as np

    if not raw.strip():
        raise RestError("JSON Parse error: The document is empty")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise RestError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from e
    if not isinstance(doc, dict):
        raise RestError(f"JSON Value: {_debug(doc)} Is not object")
    name = doc.get("signature_name", "serving_default")
    if not isinstance(name, str):
        raise RestError(f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a "
                        "string value.")
    name = name or "serving_default"
    if name not in signatures:
        raise RestError(f'Serving signature name: "{name}" not found in signature def')
    inputs = signatures[name]
    if not inputs:
        raise RestError(f"Failed to get input map for signature: {name}")
    names = sorted(inputs)  # TF Serving walks a std::set / proto map: sorted names

    if "instances" in doc and "inputs" in doc:
        raise RestError(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of 'inputs' or "
                        "'instances' keys to exist ")
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise RestError(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
        if not rows:
            raise RestError(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        if not isinstance(rows[0], dict) and len(inputs) > 1:
            raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors "
                            "required as per tensorinfo_map")
        objects = isinstance(rows[0], dict) and not _is_b64(rows[0])
        parts: dict[str, list] = {}
        for i, row in enumerate(rows):
            row_is_object = isinstance(row, dict) and not _is_b64(row)
            if objects and not row_is_object:
                raise RestError(f"Expecting object but got list at item {i} of input list")
            if not objects and row_is_object:
                raise RestError(f"Expecting value/list but got object at item {i} of input list")
            items = row.items() if objects else [(names[0], row)]
            for key, value in items:
                try:
                    if key not in inputs:
                        raise RestError(f"JSON object: does not have named input: {key}")
                    tensor = _tensor(value, inputs[key])
                    if parts.get(key):
                        first = parts[key][0]
                        if first.size != tensor.size:
                            raise RestError(f"Expecting tensor size: {first.size} but got: {tensor.size}")
                        if first.shape != tensor.shape:
                            raise RestError(f"Expecting shape {_shape_text(first.shape)} but got: "
                                            f"{_shape_text(tensor.shape)}")
                    parts.setdefault(key, []).append(tensor)
                except RestError as e:
                    where = f"key: {key} of" if objects else "of"
                    raise RestError(f"Failed to process element: {i} {where} 'instances' list. Error: "
                                    f"INVALID_ARGUMENT: {e.message}", e.status) from e
            if objects and set(row) != set(names):
                raise RestError(f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(row)} "
                                f"keys must be equal to: {','.join(names)}")
        return name, "row", {k: np.stack(v) for k, v in parts.items()}
    if "inputs" in doc:
        given = doc["inputs"]
        if not isinstance(given, dict) or _is_b64(given):
            if len(inputs) > 1:
                raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                "required as per tensorinfo_map")
            return name, "columnar", {names[0]: _tensor(given, inputs[names[0]])}
        tensors = {}
        for key in names:
            if key not in given:
                raise RestError(f"Missing named input: {key} in 'inputs' object.")
            tensors[key] = _tensor(given[key], inputs[key])
        return name, "columnar", tensors
    raise RestError("Missing 'inputs' or 'instances' key")


class Servable:
    def __init__(self, version: int, path: Path):
        import tensorflow as tf

        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(str(path))
        self.signatures = dict(self.loaded.signatures)
        self.inputs = {name: {k: spec.dtype.as_numpy_dtype.__name__ if spec.dtype != tf.string else "object"
                              for k, spec in fn.structured_input_signature[1].items()}
                       for name, fn in self.signatures.items()}

    def predict(self, raw: bytes):
        """A request body -> ("predictions" | "outputs", the answer), or RestError."""
        import tensorflow as tf

        name, form, feed = parse_predict(raw, self.inputs)
        fn = self.signatures[name]
        specs = fn.structured_input_signature[1]
        tensors = {}
        for key, spec in specs.items():
            value = feed[key]
            if not spec.shape.is_compatible_with(value.shape):
                raise RestError(f"input '{key}' has shape {_shape_text(value.shape)}, but signature '{name}' "
                                f"expects {spec.shape} (the stand-in's words; TF Serving fails in the graph)")
            tensors[key] = tf.constant(value, dtype=spec.dtype)
        outputs = {k: v.numpy() for k, v in fn(**tensors).items()}
        if form == "row":
            if len(outputs) == 1:
                return "predictions", _jsonable(next(iter(outputs.values())))
            n = len(next(iter(outputs.values())))
            return "predictions", [{k: _jsonable(v[i]) for k, v in outputs.items()} for i in range(n)]
        if len(outputs) == 1:
            return "outputs", _jsonable(next(iter(outputs.values())))
        return "outputs", {k: _jsonable(v) for k, v in outputs.items()}

    def metadata(self) -> dict:
        from tensorflow.core.framework import types_pb2

        def describe(specs: dict) -> dict:
            return {k: {"dtype": types_pb2.DataType.Name(s.dtype.as_datatype_enum), "name": s.name or k,
                        "tensor_shape": {"dim": [{"size": str(-1 if d is None else d)} for d in s.shape]}}
                    for k, s in specs.items()}

        defs = {name: {"inputs": describe(fn.structured_input_signature[1]),
                       "outputs": describe(fn.structured_outputs),
                       "method_name": "tensorflow/serving/predict"}
                for name, fn in self.signatures.items()}
        return {"signature_def": {"signature_def": defs}}


def _jsonable(array):
    """A numpy value as JSON: bytes as {"b64": ...} objects, as TF Serving writes DT_STRING outputs."""
    import numpy as np

    if array.dtype == object:
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
    return array.tolist()


class ModelServer:
    """Serves the newest version under `base_path` as model `name`; `start()` returns once it listens."""

    def __init__(self, name: str, base_path, host: str = "127.0.0.1", port: int = 0,
                 poll_seconds: float = 1.0):
        self.name = name
        self.base_path = Path(base_path)
        self.poll_seconds = poll_seconds
        self.current: Servable | None = None
        self.load_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def versions(self) -> dict[int, Path]:
        if not self.base_path.is_dir():
            return {}
        return {int(p.name): p for p in self.base_path.iterdir()
                if p.name.isdigit() and (p / "saved_model.pb").is_file()}

    def poll(self) -> None:
        """Loads the newest version if it is not the one being served (TF Serving's file-system poll)."""
        versions = self.versions()
        if not versions:
            return
        newest = max(versions)
        if self.current is not None and self.current.version == newest:
            return
        try:
            servable = Servable(newest, versions[newest])
        except Exception as e:  # a broken version: keep serving the previous one, as TF Serving does
            self.load_error = f"version {newest}: {e}"
            print(f"serving: cannot load {versions[newest]}: {e}", file=sys.stderr, flush=True)
            return
        with self._lock:
            self.current = servable
        print(f"serving: {self.name} version {newest} is AVAILABLE", flush=True)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def start(self) -> ModelServer:
        self.poll()
        threading.Thread(target=self._poll_loop, name="poll", daemon=True).start()
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the tests and the demo keep their own logs
                pass

            def _send(self, code: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _route(self, method: str):
                match = _PATH.match(self.path.split("?", 1)[0])
                if not match or (method, match["rest"]) not in (("GET", None), ("GET", "/metadata"),
                                                                 ("POST", ":predict")):
                    return self._send(400, {"error": f"Malformed request: {method} {self.path}"})
                name, version, rest = match["name"], match["version"], match["rest"]
                with server._lock:
                    current = server.current
                if name != server.name or current is None:
                    return self._send(404, {"error": f"Servable not found for request: Latest({name})"})
                if version is not None and int(version) != current.version:
                    return self._send(404, {"error": f"Servable not found for request: "
                                                     f"Specific({name}, {version})"})
                if method == "GET" and rest is None:
                    return self._send(200, {"model_version_status": [{
                        "version": str(current.version), "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""}}]})
                if method == "GET":
                    return self._send(200, {"model_spec": {"name": name, "signature_name": "",
                                                           "version": str(current.version)},
                                            "metadata": current.metadata()})
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    key, value = current.predict(self.rfile.read(length))
                except RestError as e:
                    return self._send(e.status, {"error": e.message})
                except Exception as e:  # TensorFlow refused the inputs while running the signature
                    text = str(e).strip()
                    return self._send(400, {"error": text.splitlines()[0][:500] if text else type(e).__name__})
                return self._send(200, {key: value})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--model_base_path", required=True)
    parser.add_argument("--port", type=int, default=8500,
                        help="TF Serving's gRPC port: accepted so the stack's flags pass as they are; the stand-in "
                             "serves REST only")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="0 picks a free port")
    parser.add_argument("--rest_api_host", default="127.0.0.1")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    server = ModelServer(args.model_name, args.model_base_path, args.rest_api_host, args.rest_api_port,
                         args.file_system_poll_wait_seconds).start()
    print(f"serving {args.model_name} at {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
