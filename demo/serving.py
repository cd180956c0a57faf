"""A stand-in for TF Serving's REST API, for the tests and the local demo.

It stands in for TensorFlow Serving (`tensorflow_model_server`), which cannot be installed here: no Docker
engine, and no binary on PyPI or Debian. It does the part the project relies on, the way TF Serving does it:

- serves the SavedModels under `--model_base_path`, laid out as `<base>/<integer version>/saved_model.pb ...`,
  polling the folder every `--file_system_poll_wait_seconds` and switching to the newest version (TF Serving's
  default "latest 1" version policy); a folder without `saved_model.pb` is not a version;
- `GET  /v1/models/<name>`                       model status (`model_version_status`, state AVAILABLE)
- `GET  /v1/models/<name>/metadata`              the signature's inputs and outputs
- `POST /v1/models/<name>[/versions/<v>]:predict` `{"instances": [...]}` (row format) or `{"inputs": ...}`
  (columnar) -> `{"predictions": ...}` / `{"outputs": ...}`; with a single output tensor, each prediction is
  that tensor's row, as TF Serving answers;
- errors as `{"error": "..."}` with 400 (bad request) or 404 (unknown model or version).

Run: `python -m demo.serving --model_name mnist --model_base_path /models/mnist --rest_api_port 8501`
(TF Serving's own flag names). It prints `serving <name> at http://host:port` once it listens.
"""

from __future__ import annotations

import argparse
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


class Servable:
    def __init__(self, version: int, path: Path):
        import tensorflow as tf

        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(str(path))
        self.signatures = dict(self.loaded.signatures)

    def signature(self, name: str):
        if name not in self.signatures:
            raise ValueError(f"Serving signature name: \"{name}\" not found in signature def")
        return self.signatures[name]

    def predict(self, body: dict):
        import numpy as np
        import tensorflow as tf

        fn = self.signature(body.get("signature_name", "serving_default"))
        inputs = fn.structured_input_signature[1]
        if "instances" in body:
            rows = body["instances"]
            if not isinstance(rows, list) or not rows:
                raise ValueError("'instances' must be a non-empty list")
            if len(inputs) == 1:
                feed = {next(iter(inputs)): rows}
            else:
                feed = {k: [row[k] for row in rows] for k in inputs}
        elif "inputs" in body:
            given = body["inputs"]
            feed = given if isinstance(given, dict) else {next(iter(inputs)): given}
        else:
            raise ValueError("Missing 'instances' or 'inputs' key")
        tensors = {}
        for key, spec in inputs.items():
            if key not in feed:
                raise ValueError(f"Missing input '{key}'")
            value = np.asarray(feed[key], dtype=spec.dtype.as_numpy_dtype)
            if not spec.shape.is_compatible_with(value.shape):
                raise ValueError(f"input '{key}' has shape {list(value.shape)}, expected {spec.shape}")
            tensors[key] = tf.constant(value)
        outputs = {k: v.numpy() for k, v in fn(**tensors).items()}
        if "instances" in body:
            if len(outputs) == 1:
                return "predictions", next(iter(outputs.values())).tolist()
            n = len(next(iter(outputs.values())))
            return "predictions", [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]
        if len(outputs) == 1:
            return "outputs", next(iter(outputs.values())).tolist()
        return "outputs", {k: v.tolist() for k, v in outputs.items()}

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
                if not match:
                    return self._send(404, {"error": f"Malformed request: {method} {self.path}"})
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
                if method == "GET" and rest == "/metadata":
                    return self._send(200, {"model_spec": {"name": name, "signature_name": "",
                                                           "version": str(current.version)},
                                            "metadata": current.metadata()})
                if method == "POST" and rest == ":predict":
                    try:
                        length = int(self.headers.get("Content-Length") or 0)
                        body = json.loads(self.rfile.read(length) or b"null")
                        if not isinstance(body, dict):
                            raise ValueError("the request body must be a JSON object")
                        key, value = current.predict(body)
                    except Exception as e:  # TF Serving answers bad input with 400 and an error text
                        return self._send(400, {"error": str(e).strip().splitlines()[0][:500]
                                                if str(e).strip() else type(e).__name__})
                    return self._send(200, {key: value})
                return self._send(405, {"error": f"{method} is not supported on {self.path}"})

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
