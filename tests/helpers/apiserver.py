"""A stand-in Kubernetes API server for tests of code that reads the cluster through the `kubernetes` client:
real HTTP on 127.0.0.1 answering GETs from a function, and a kubeconfig whose named context points at it (the
current context points elsewhere, so code that ignores the context it is given fails)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}


class StandInAPIServer:
    """`answer(path)` -> (HTTP status, JSON body) for each GET (`path` with its query string); every path asked
    is kept in `paths`, in order. Use as a context manager (it stops on exit)."""

    def __init__(self, answer: Callable[[str], tuple[int, dict]]):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.paths.append(self.path)
                code, body = answer(self.path)
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def kubeconfig(self, path: Path, context: str = "test") -> Path:
        """Writes a kubeconfig to `path` whose context `context` reaches this server; its current context is
        another one, pointing nowhere. Returns `path`."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "other",
            "clusters": [{"name": "c", "cluster": {"server": self.url}},
                         {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}},
                         {"name": "other", "context": {"cluster": "nowhere", "user": "u"}}],
        }))
        return path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StandInAPIServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
