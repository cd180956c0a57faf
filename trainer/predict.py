"""`predict`: the mnist client. Sends test images to TF Serving's REST API and prints the error rate.

`POST <server>/v1/models/<model>:predict` with `{"instances": [image, ...]}`, each image 28x28 floats in
[0, 1] (the `serving_default` signature's `images` input), and reads `{"predictions": [[p0..p9], ...]}`. The
images come from the test split under `DATA_URL` as numpy arrays: this command never imports TensorFlow.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from common.errors import UserError
from trainer import cli

FIX_SERVER = ("check --server: TF Serving's REST address, e.g. http://localhost:8501 (in a cluster, "
              "`kubectl port-forward svc/<serving> 8501` first)")


def add_arguments(parser) -> None:
    parser.add_argument("--server", required=True,
                        help="TF Serving's REST address: http://host:8501 (host:port means http://host:port)")
    parser.add_argument("--model", default="mnist",
                        help="the model name TF Serving serves (default: %(default)s)")
    parser.add_argument("--num-tests", type=int, default=100,
                        help="test images to send (default: %(default)s; capped at the test split's size)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="images per request (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per request (default: %(default)s)")
    cli.env_arg(parser, "--data-url", "DATA_URL", "the prepared dataset whose test images are sent")


def base_url(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    parsed = urllib.parse.urlparse(server)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError("--server is not an http(s) address", server, FIX_SERVER)
    return server


def _request(url: str, body: dict | None, timeout: float, server: str, model: str) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        message = _error_text(e)
        if e.code == 404 and message.startswith("Could not find any versions of model"):
            # TF Serving's model status for a name it has never loaded a version of: the right name while its
            # folder is still empty gives the same answer as a wrong name, so the fix names both.
            raise UserError("no version of the model is loaded in the model server yet", model,
                            "check that training finished and published a version under MODEL_URL, and the "
                            "serving pod's sync-model log (kubectl logs deploy/serving -c sync-model); if both "
                            f"are fine, check --model: it must match TF Serving's --model_name ({message})") from e
        if e.code == 404:
            raise UserError("the model server does not serve this model", model,
                            f"check --model: it must match TF Serving's --model_name ({message})") from e
        raise UserError(f"the model server answered HTTP {e.code}", message,
                        "the model's serving_default must take `images` float32 [None, 28, 28]") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach the model server ({reason})", server, FIX_SERVER) from e
    try:
        return json.loads(raw)
    except ValueError as e:
        raise UserError("the model server's answer is not JSON", raw[:200], FIX_SERVER) from e


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read()).get("error", ""))[:300] or e.reason
    except (ValueError, AttributeError, OSError):
        return str(e.reason)


def model_version(server: str, model: str, timeout: float) -> str | None:
    """The version TF Serving reports as AVAILABLE (`GET /v1/models/<model>`)."""
    status = _request(f"{server}/v1/models/{urllib.parse.quote(model)}", None, timeout, server, model)
    versions = [v.get("version") for v in status.get("model_version_status", [])
                if v.get("state") == "AVAILABLE"]
    if not versions:
        raise UserError("the model server has no available version of the model", model,
                        "wait until a version is loaded (sync-model copies one from MODEL_URL)")
    return max(versions, key=lambda v: int(v) if str(v).isdigit() else -1)


def run(args) -> dict:
    import numpy as np

    from trainer import data
    from trainer.store import open_store

    if args.num_tests < 1:
        raise UserError("--num-tests must be at least 1", args.num_tests, "pass e.g. --num-tests 100")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1", args.batch_size, "pass e.g. --batch-size 100")
    server = base_url(args.server)
    version = model_version(server, args.model, args.timeout)
    x, y = data.test_arrays(open_store(args.data_url, "DATA_URL"))
    count = min(args.num_tests, len(x))
    url = f"{server}/v1/models/{urllib.parse.quote(args.model)}:predict"
    errors = 0
    start = time.perf_counter()
    for lo in range(0, count, args.batch_size):
        hi = min(lo + args.batch_size, count)
        images = np.round(x[lo:hi].astype(np.float32) / 255.0, 4)
        answer = _request(url, {"instances": images.tolist()}, args.timeout, server, args.model)
        probs = np.asarray(answer.get("predictions", []), dtype=np.float32)
        if probs.shape != (len(images), 10):
            raise UserError("unexpected predictions from the model server", f"shape {list(probs.shape)}",
                            "the model must return 10 class probabilities per image")
        errors += int((probs.argmax(-1) != y[lo:hi]).sum())
    took = time.perf_counter() - start
    print(f"sent {count} images to {url} (version {version}): {errors} wrong, "
          f"error rate {errors / count:.2%}", flush=True)
    return {"error_rate": errors / count, "errors": errors, "count": count, "model": args.model,
            "model_version": int(version) if str(version).isdigit() else version, "server": server,
            "seconds": round(took, 3)}
