"""Pods whose S3 client we don't write get the region, endpoint and addressing style in the form that client
reads. Today that is TensorBoard: its S3 reader is `boto3.client("s3", endpoint_url=$S3_ENDPOINT)` inside
TensorBoard (no TensorFlow), so botocore's own variables apply (`AWS_DEFAULT_REGION`, not `AWS_REGION`).

The check runs that very client: TensorBoard's S3 file system, in a TF-free process whose environment is
exactly the rendered container's (secrets as placeholders), and records the first request it would send (a
botocore `before-send` hook stops it there: no network). The request must go to the stack's endpoint, by path,
signed for the stack's region.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

from tests.conftest import ROOT
from tests.helpers.process import stdout_json
from tests.infra.pods import containers, env

# The TensorBoard pod's client, as the pod runs it: TensorBoard's S3FileSystem, boto3's default session.
PROBE = r"""
import json, sys
sys.modules["tensorflow"] = None
import boto3
from tensorboard.compat.tensorflow_stub.io import gfile

seen = {}

class Stop(Exception):
    pass

def before_send(request, **_):
    seen["url"] = request.url
    auth = request.headers["Authorization"]
    seen["auth"] = auth.decode() if isinstance(auth, bytes) else auth
    raise Stop()

boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register("before-send.s3", before_send)
try:
    gfile.S3FileSystem().exists(sys.argv[1])
except Stop:
    pass
print(json.dumps(seen))
"""

EXTRA = {  # another region and a plain-http endpoint by host name, so us-east-1 or virtual hosts would show
    "storage.mode": "external",
    "storage.endpoint": "http://minio.storage.svc:9000",
    "storage.region": "eu-central-1",
    "storage.accessKeyId": {"secure": "x"},
    "storage.secretAccessKey": {"secure": "y"},
}


def first_request(container: dict, logdir: str) -> dict:
    run_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    for name, e in env(container).items():
        run_env[name] = e["value"] if "value" in e else f"placeholder-{name.lower()}"
    if "AWS_ACCESS_KEY_ID" not in run_env:  # IRSA: EKS injects a web identity at admission; any key signs
        run_env.update(AWS_ACCESS_KEY_ID="irsa-stand-in", AWS_SECRET_ACCESS_KEY="irsa-stand-in")
    proc = subprocess.run([sys.executable, "-c", PROBE, logdir], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return stdout_json(proc)


def check_tensorboard(rendered, region: str, endpoint: str | None) -> None:
    (board,) = [c for where, c, _ in containers(rendered) if where == "Deployment/tensorboard/tensorboard"]
    logdir = board["command"][board["command"].index("--logdir") + 1]
    bucket = urlparse(logdir).netloc
    sent = first_request(board, logdir)
    assert "Credential=placeholder-aws_access_key_id/" in sent["auth"] or "irsa-stand-in" in sent["auth"]
    assert f"/{region}/s3/aws4_request" in sent["auth"], (region, sent)
    url = urlparse(sent["url"])
    if endpoint:
        assert f"{url.scheme}://{url.netloc}" == endpoint, (endpoint, sent)
        assert url.path.startswith(f"/{bucket}"), ("path-style addressing", sent)
    else:
        assert url.netloc.startswith(f"{bucket}.s3.") and url.netloc.endswith(".amazonaws.com"), sent


def test_tensorboard_client_gets_region_endpoint_and_path_style(renders):
    rendered = renders("dev", EXTRA)
    check_tensorboard(rendered, "eu-central-1", "http://minio.storage.svc:9000")


def test_tensorboard_client_in_every_variant(variant):
    (board,) = [c for where, c, _ in containers(variant) if where == "Deployment/tensorboard/tensorboard"]
    access = env(board)
    region = access["AWS_REGION"]["value"]
    assert access["AWS_DEFAULT_REGION"]["value"] == region  # what botocore reads
    endpoint = access.get("S3_ENDPOINT", {}).get("value")
    check_tensorboard(variant, region, endpoint)


def test_our_own_clients_need_only_the_contract(dev):
    """The trainer's pods read AWS_REGION (trainer/s3.py): no boto3-default variables are added there. The
    retrain's `check-parameters` step reads only its arguments and gets no S3 environment at all."""
    ours = [c for where, c, _ in containers(dev) if c["image"].startswith(("kubeflow-e2e/trainer",
                                                                          "kubeflow-e2e/sidecar"))]
    offline = [c for c in ours if c.get("command", [])[3:4] == ["check-parameters"]]
    assert ours and offline and all("env" not in c for c in offline)
    for c in ours:
        if c in offline:
            continue
        assert "AWS_REGION" in env(c) and "AWS_DEFAULT_REGION" not in env(c), c["name"]


CHECKSUMS = {**EXTRA, "storage.checksums": "when_required"}


def s3_containers(rendered) -> list[tuple[str, dict]]:
    """Every container that gets the stack's S3 access (the trainer's, the sidecar's, TensorBoard's)."""
    return [(where, c) for where, c, _ in containers(rendered) if "AWS_REGION" in env(c)]


def test_checksums_setting_reaches_every_s3_pod(renders):
    """`storage.checksums: when_required` sets botocore's two variables in every pod that talks to S3, so no
    boto3 in them (ours or TensorBoard's) sends CRC32 headers a third-party server refuses."""
    rendered = renders("dev", CHECKSUMS)
    pods = s3_containers(rendered)
    wheres = [where for where, _ in pods]
    for expected in ("WorkflowTemplate/prepare-data/", "TFJob/", "Deployment/serving/sync-model-once",
                     "Deployment/serving/sync-model", "Deployment/tensorboard/", "WorkflowTemplate/retrain-mnist/"):
        assert any(w.startswith(expected) for w in wheres), (expected, wheres)
    for where, c in pods:
        access = env(c)
        for key in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
            assert access.get(key, {}).get("value") == "when_required", (where, key)


def test_checksums_default_leaves_botocores_own(dev):
    """The default is botocore's own `when_supported`: nothing is added, so existing stacks render as before."""
    for where, c in s3_containers(dev):
        assert not any(k.endswith("_CHECKSUM_CALCULATION") or k.endswith("_CHECKSUM_VALIDATION")
                       for k in env(c)), where
