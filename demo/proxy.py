"""A small TCP proxy that can cut its clients off for a while: the S3-outage fault drill.

The trainer talks to `proxy.endpoint` instead of the S3 server. `proxy.outage(seconds)` (or `down()` then
`up()`) makes the endpoint unreachable while the server behind it keeps its data: open connections are reset
and new ones are accepted and reset at once (so they can be counted), as a client sees a dead endpoint or a
flapping load balancer. moto keeps its objects in memory, so restarting the server instead would lose them.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from demo.s3server import free_port


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, so the peer sees `connection reset` rather than a clean end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # SHUT_RD sends nothing but wakes a thread blocked in recv() on this socket; close() then sends RST.
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Proxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1", port: int | None = None):
        self.target = (target_host, target_port)
        self.host = host
        self.port = port or free_port(host)
        self.refused = 0  # connections reset while down: proves a client tried during the outage
        self.served = 0  # connections passed through
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    @classmethod
    def to(cls, endpoint: str) -> Proxy:
        """A proxy in front of an `http://host:port` endpoint."""
        hostport = endpoint.split("://", 1)[-1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        return cls(host, int(port))

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def start(self) -> Proxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.port))
        self._listener.listen(128)
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """From now on every connection, open or new, is reset."""
        self._up.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def up(self) -> None:
        self._up.set()

    def outage(self, seconds: float) -> threading.Thread:
        """Goes down now and back up after `seconds`, in the background; join the thread to wait for it."""
        self.down()

        def later() -> None:
            time.sleep(seconds)
            self.up()

        t = threading.Thread(target=later, name="proxy-outage", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._closing = True
        if self._listener:
            try:
                self._listener.close()
            except OSError:
                pass
        self.down()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            self.served += 1
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        # One side ended or was reset: end both, so the other pump stops too.
        with self._lock:
            self._pairs.discard(pair)
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
