"""An HTTP proxy in front of the S3 server that answers chosen requests itself, with AWS's error documents.

For the tests of what a user sees when S3 refuses a request for a reason the embedded server never has: a
clock off by hours, a key it does not know, a bucket's KMS key the role may not use, or an S3-compatible
server that rejects botocore's checksum headers. Every other request passes through unchanged (the client
signs for the proxy's host, which the embedded server does not check).

    with FaultProxy(server.endpoint, [reject_code("RequestTimeTooSkewed")]) as proxy:
        ... S3_ENDPOINT=proxy.endpoint ...

A rule is `rule(method, path, headers) -> Fault | None`; the first one that returns a Fault answers.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

# AWS's texts for each code (the S3 API reference, "Error responses": code, HTTP status, message).
AWS_ERRORS = {
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "AccessDenied": (403, "Access Denied"),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    # What S3 answers for an SSE-KMS object or bucket when the caller may not use the key.
    "KMS": (403, "User: arn:aws:iam::111122223333:user/pipeline is not authorized to perform: kms:Decrypt on "
                 "resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because "
                 "no identity-based policy allows the kms:Decrypt action"),
}


@dataclass
class Fault:
    status: int
    code: str
    message: str


def reject_code(code: str, methods: tuple[str, ...] = ()) -> callable:
    """Answers every request (or those with one of `methods`) with AWS's error `code` ("KMS": AccessDenied
    naming kms:Decrypt)."""
    status, message = AWS_ERRORS[code]
    fault = Fault(status, "AccessDenied" if code == "KMS" else code, message)
    return lambda method, path, headers: fault if not methods or method in methods else None


CHECKSUM_HEADERS = ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")


def reject_checksum_headers(method: str, path: str, headers) -> Fault | None:
    """An S3-compatible server that predates the flexible checksums: an upload carrying any of them is refused
    (Backblaze B2's answer; others answer NotImplemented or XAmzContentSHA256Mismatch)."""
    if method != "PUT":
        return None
    for name in headers.keys():
        lower = name.lower()
        if lower in CHECKSUM_HEADERS or lower.startswith("x-amz-checksum-"):
            return Fault(400, "InvalidArgument", f"Unsupported header '{lower}' received for this API call.")
    return None


class FaultProxy:
    def __init__(self, target: str, rules: list, host: str = "127.0.0.1"):
        parts = urllib.parse.urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.rules = list(rules)
        self.answered: list[tuple[str, str, str]] = []  # (method, path, code) of each request it refused
        self.passed = 0
        self.httpd = ThreadingHTTPServer((host, 0), self._handler())
        self.httpd.daemon_threads = True

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self.httpd.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, fault: Fault) -> None:
                request_id = uuid.uuid4().hex[:16].upper()
                doc = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
                       f"<Message>{escape(fault.message)}</Message><RequestId>{request_id}</RequestId>"
                       f"<HostId>{uuid.uuid4().hex}</HostId></Error>").encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("x-amz-request-id", request_id)
                self.send_header("Content-Length", str(len(doc) if self.command != "HEAD" else 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(doc)

            def _handle(self) -> None:
                body = self._body()
                for rule in proxy.rules:
                    fault = rule(self.command, self.path, self.headers)
                    if fault is not None:
                        proxy.answered.append((self.command, self.path, fault.code))
                        return self._answer(fault)
                proxy.passed += 1
                conn = http.client.HTTPConnection(*proxy.target, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("transfer-encoding", "connection")}
                    if self.command in ("PUT", "POST") or body:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)) if self.command != "HEAD"
                                     else response.getheader("Content-Length", "0"))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
