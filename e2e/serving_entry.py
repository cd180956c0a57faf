#!/usr/bin/env python3
"""`tensorflow_model_server` in the e2e's serving stand-in image: `demo.serving` with TF Serving's flags.

The stack's serving pod probes TF Serving's gRPC port for liveness (tcpSocket) and reaches REST from other
pods; the stand-in speaks REST only, so this listens on `--port` (accepting and closing connections, no gRPC)
and binds REST on every address of the pod, as TF Serving does.
"""

import argparse
import socket
import sys
import threading

sys.path.insert(0, "/app")

from demo import serving  # noqa: E402


def hold_port(port: int) -> None:
    srv = socket.create_server(("0.0.0.0", port))

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            conn.close()

    threading.Thread(target=loop, daemon=True).start()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--port", type=int, default=8500)
    known, _ = ap.parse_known_args()
    if known.port:
        hold_port(known.port)
    sys.exit(serving.main(["--rest_api_host=0.0.0.0", *sys.argv[1:]]))
