"""A stand-in for TF Serving's REST API, for the tests and the local demo (`tensorflow_model_server` cannot be
installed here). It serves the newest `<model_base_path>/<integer version>/` that holds a `saved_model.pb`,
polling for new ones (TF Serving's "latest 1" policy), and answers model status, metadata, `:predict` in row
or columnar format, `:classify` and `:regress` by TF Serving's rules and with its error texts. What it
answers, and from which TF Serving sources: docs/trainer.md, "The TF Serving stand-in".

- with `--monitoring_config_file` naming a file with `prometheus_config { enable: true, path: "<path>" }` (TF
  Serving's `MonitoringConfig` text proto), `GET <path>` answers Prometheus text with TF Serving's own names
  (`tensorflow_serving/servables/tensorflow/util.cc`, "/" written as ":"): `:tensorflow:serving:request_count`
  {model_name, status} and the histogram `:tensorflow:serving:request_latency` {model_name, API, entrypoint}
  in microseconds, on its buckets (10 x 1.8^i), for every predict, classify and regress request.

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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from demo.rest_json import RestError, jsonable, parse_examples, parse_predict, shape_text

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict|:classify|:regress)?$"
)
# TF Serving's names for the two example-based APIs (tensorflow/cc/saved_model/signature_constants.h), and the
# word its errors use for each.
_EXAMPLE_APIS = {":classify": ("classification", "tensorflow/serving/classify", "inputs"),
                 ":regress": ("regression", "tensorflow/serving/regress", "inputs")}


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
        self.signature_defs = _signature_defs(path)

    def examples_api(self, rest: str, raw: bytes, method_check: bool):
        """`:classify` or `:regress` on this version: always a RestError, in TF Serving's order of checks."""
        word, method, input_key = _EXAMPLE_APIS[rest]
        name = parse_examples(raw)
        found = self.signature_defs.get(name)
        if found is None:
            raise RestError(f"No signature was found with the name: {name}")
        if method_check:
            raise RestError(f"Expected {word} signature method_name to be {method}. Was: {found.method_name}")
        if len(found.inputs) != 1:
            raise RestError("Expected one input Tensor.")
        outputs = (1, 2) if word == "classification" else (1,)
        if len(found.outputs) not in outputs:
            raise RestError(f"Expected one or two output Tensors, found {len(found.outputs)}"
                            if word == "classification" else "Expected one output Tensor.")
        if input_key not in found.inputs:
            raise RestError(f"No {word} inputs found in SignatureDef: {found}")
        raise RestError(f"the stand-in cannot run a {word} signature (its words; TF Serving would run it)")

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
                raise RestError(f"input '{key}' has shape {shape_text(value.shape)}, but signature '{name}' "
                                f"expects {spec.shape} (the stand-in's words; TF Serving fails in the graph)")
            tensors[key] = tf.constant(value, dtype=spec.dtype)
        outputs = {k: v.numpy() for k, v in fn(**tensors).items()}
        if form == "row":
            if len(outputs) == 1:
                return "predictions", jsonable(next(iter(outputs.values())))
            n = len(next(iter(outputs.values())))
            return "predictions", [{k: jsonable(v[i]) for k, v in outputs.items()} for i in range(n)]
        if len(outputs) == 1:
            return "outputs", jsonable(next(iter(outputs.values())))
        return "outputs", {k: jsonable(v) for k, v in outputs.items()}

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


def _signature_defs(path: Path) -> dict:
    """The SignatureDef protos of a SavedModel's serving graph, as TF Serving reads them from saved_model.pb
    (their text form is what its errors print, protobuf's DebugString)."""
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = next((g for g in model.meta_graphs if "serve" in g.meta_info_def.tags), model.meta_graphs[0])
    return dict(graph.signature_def)


# TF Serving's request latency buckets, in microseconds (util.cc: exponential, 10 x 1.8^i, 33 of them).
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))
_MONITORING_PATH = re.compile(r'prometheus_config\s*\{[^}]*\benable\s*:\s*true\b[^}]*\bpath\s*:\s*"([^"]+)"', re.S)


def monitoring_path(config_text: str) -> str | None:
    """The metrics path a `--monitoring_config_file` turns on (None: Prometheus export off)."""
    found = _MONITORING_PATH.search(config_text)
    return found.group(1) if found else None


class RequestMetrics:
    """TF Serving's request count and latency, as its Prometheus exporter writes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.latency: dict[tuple[str, str], list] = {}  # (model, API) -> [bucket counts..., sum, count]

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        us = seconds * 1e6
        with self._lock:
            self.counts[(model, status)] = self.counts.get((model, status), 0) + 1
            row = self.latency.setdefault((model, api), [0] * len(LATENCY_BUCKETS_US) + [0.0, 0])
            for i, le in enumerate(LATENCY_BUCKETS_US):
                if us <= le:
                    row[i] += 1
            row[-2] += us
            row[-1] += 1

    def text(self) -> str:
        count, latency = ":tensorflow:serving:request_count", ":tensorflow:serving:request_latency"
        lines = [f"# TYPE {count} counter"]
        with self._lock:
            for (model, status), n in sorted(self.counts.items()):
                lines.append(f'{count}{{model_name="{model}",status="{status}"}} {n}')
            lines.append(f"# TYPE {latency} histogram")
            for (model, api), row in sorted(self.latency.items()):
                labels = f'model_name="{model}",API="{api}",entrypoint="REST"'
                for le, n in zip(LATENCY_BUCKETS_US, row, strict=False):
                    lines.append(f'{latency}_bucket{{{labels},le="{le:g}"}} {n}')
                lines.append(f'{latency}_bucket{{{labels},le="+Inf"}} {row[-1]}')
                lines.append(f"{latency}_sum{{{labels}}} {row[-2]:g}")
                lines.append(f"{latency}_count{{{labels}}} {row[-1]}")
        return "\n".join(lines) + "\n"


# The HTTP status a REST error maps from, back to the canonical code TF Serving counts it under.
_STATUS = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED"}


class ModelServer:
    """Serves the newest version under `base_path` as model `name`; `start()` returns once it listens."""

    def __init__(self, name: str, base_path, host: str = "127.0.0.1", port: int = 0,
                 poll_seconds: float = 1.0, method_name_check: bool = False, metrics_path: str | None = None):
        """`metrics_path`: where TF Serving's Prometheus metrics are served (None: not at all)."""
        self.name = name
        self.metrics_path = metrics_path
        self.metrics = RequestMetrics()
        self.method_name_check = method_name_check
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

            started: float | None = None  # set for the requests TF Serving counts (predict, classify, regress)

            def _send(self, code: int, body: dict) -> None:
                if self.started is not None:  # counted before the answer goes out: a client then sees it
                    match = _PATH.match(self.path.split("?", 1)[0])
                    server.metrics.record(match["name"], match["rest"][1:], _STATUS.get(code, "UNKNOWN"),
                                          time.monotonic() - self.started)
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _route(self, method: str):
                match = _PATH.match(self.path.split("?", 1)[0])
                if not match or (method, match["rest"]) not in (("GET", None), ("GET", "/metadata"),
                                                                 ("POST", ":predict"), ("POST", ":classify"),
                                                                 ("POST", ":regress")):
                    return self._send(400, {"error": f"Malformed request: {method} {self.path}"})
                name, version, rest = match["name"], match["version"], match["rest"]
                with server._lock:
                    current = server.current
                if method == "GET" and rest is None:
                    return self._status(name, version, current)
                body = b""
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if rest in _EXAMPLE_APIS:
                    try:  # TF Serving parses the body before it looks the servable up
                        parse_examples(body)
                    except RestError as e:
                        return self._send(e.status, {"error": e.message})
                if name != server.name or current is None:
                    return self._send(404, {"error": f"Servable not found for request: Latest({name})"})
                if version is not None and int(version) != current.version:
                    return self._send(404, {"error": f"Servable not found for request: "
                                                     f"Specific({name}, {version})"})
                if method == "GET":
                    return self._send(200, {"model_spec": {"name": name, "signature_name": "",
                                                           "version": str(current.version)},
                                            "metadata": current.metadata()})
                try:
                    if rest in _EXAMPLE_APIS:
                        current.examples_api(rest, body, server.method_name_check)
                    key, value = current.predict(body)
                except RestError as e:
                    return self._send(e.status, {"error": e.message})
                except Exception as e:  # TensorFlow refused the inputs while running the signature
                    text = str(e).strip()
                    return self._send(400, {"error": text.splitlines()[0][:500] if text else type(e).__name__})
                return self._send(200, {key: value})

            def _status(self, name: str, version: str | None, current: Servable | None):
                """GET /v1/models/<name>[/versions/<v>], in get_model_status_impl.cc's words: its servable
                state monitor knows no version of a model whose folder is empty, nor of an unknown name."""
                if name != server.name or current is None:
                    if version is not None:
                        return self._send(404, {"error": f"Could not find version {version} of model {name}"})
                    return self._send(404, {"error": f"Could not find any versions of model {name}"})
                if version is not None and int(version) != current.version:
                    return self._send(404, {"error": f"Could not find version {version} of model {name}"})
                return self._send(200, {"model_version_status": [{
                    "version": str(current.version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})

            def do_GET(self):
                if server.metrics_path and self.path.split("?", 1)[0] == server.metrics_path:
                    raw = server.metrics.text().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self._route("GET")

            def do_POST(self):
                match = _PATH.match(self.path.split("?", 1)[0])
                if match and match["rest"] in (":predict", ":classify", ":regress"):
                    self.started = time.monotonic()
                self._route("POST")

        return Handler


def flags() -> argparse.ArgumentParser:
    """TF Serving's flags that the stand-in takes: every flag the stack's serving container passes."""
    parser = argparse.ArgumentParser(prog="python -m demo.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--model_base_path", required=True)
    parser.add_argument("--port", type=int, default=8500,
                        help="TF Serving's gRPC port: accepted so the stack's flags pass as they are; the stand-in "
                             "serves REST only")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="0 picks a free port")
    parser.add_argument("--rest_api_host", default="127.0.0.1")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--enable_signature_method_name_check", nargs="?", const=True,
                        type=lambda v: v.lower() in ("1", "true"), default=False,
                        help="as TF Serving's flag: :classify/:regress check the signature's method_name first")
    parser.add_argument("--monitoring_config_file", default=None,
                        help='as TF Serving\'s flag: prometheus_config { enable: true, path: "..." } serves metrics')
    parser.add_argument("--grpc_channel_arguments", default="",
                        help="TF Serving's gRPC channel arguments (the stack caps the request size): accepted so the "
                             "stack's flags pass as they are; the stand-in serves no gRPC")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = flags().parse_args(argv)
    metrics_path = None
    if args.monitoring_config_file:
        metrics_path = monitoring_path(Path(args.monitoring_config_file).read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    server = ModelServer(args.model_name, args.model_base_path, args.rest_api_host, args.rest_api_port,
                         args.file_system_poll_wait_seconds, args.enable_signature_method_name_check,
                         metrics_path).start()
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
