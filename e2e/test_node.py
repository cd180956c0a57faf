"""The real node itself, before the stack: a kubelet of the version built, a pod admitted under Pod Security
`restricted` that runs one of our images, resolves a Service through the cluster DNS and reaches the API server
through the `kubernetes` Service, its log read through the API."""

from __future__ import annotations

import time

from e2e import images
from e2e.conftest import get
from e2e.node import NODE_NAME

NS = "e2e-node-check"
PROBE = """
import socket, ssl
ip = socket.gethostbyname("kubernetes.default.svc.cluster.local")
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
with socket.create_connection((ip, 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="kubernetes.default.svc") as tls:
        print("resolved", ip, "tls", tls.version(), flush=True)
"""


def test_the_node_is_a_real_kubelet(cluster):
    info = get(cluster, f"/api/v1/nodes/{NODE_NAME}")["status"]["nodeInfo"]
    print(f"node {NODE_NAME}: kubelet {info['kubeletVersion']}, {info['containerRuntimeVersion']}, "
          f"kernel {info['kernelVersion']}")
    assert info["kubeletVersion"] == "v1.36.1"
    assert info["containerRuntimeVersion"].startswith("containerd://")


def test_a_restricted_pod_resolves_and_reaches_the_api_server(cluster):
    cluster.api("/api/v1/namespaces", "POST", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    })
    try:
        cluster.api(f"/api/v1/namespaces/{NS}/pods", "POST", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "probe", "image": images.OURS["sidecar"], "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", PROBE],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }],
            },
        })
        deadline = time.monotonic() + 120
        while (phase := get(cluster, f"/api/v1/namespaces/{NS}/pods/probe")["status"].get("phase")) not in (
            "Succeeded", "Failed"
        ):
            assert time.monotonic() < deadline, f"probe pod still {phase}"
            time.sleep(1)
        log = get(cluster, f"/api/v1/namespaces/{NS}/pods/probe/log")["raw"]
        print(f"probe pod ({phase}): {log.strip()}")
        assert phase == "Succeeded" and "resolved 10.96.0.1 tls TLSv1.3" in log, log
    finally:
        cluster.api(f"/api/v1/namespaces/{NS}", "DELETE")


def test_the_platform_teams_controllers_run_from_the_images_built(cluster, installed_platform):
    """The training operator and Argo's controller, installed from their modules' manifests, run the images
    e2e/images.py built from those modules (no registry was reached)."""
    for ns, label, image in (
        ("kubeflow", "control-plane=kubeflow-training-operator", images.PLATFORM["training-operator"][0]),
        ("argo", "app=workflow-controller", images.PLATFORM["workflow-controller"][0]),
    ):
        (pod,) = get(cluster, f"/api/v1/namespaces/{ns}/pods?labelSelector={label}")["items"]
        assert pod["spec"]["containers"][0]["image"] == image
        assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["status"]
        print(f"{ns}/{pod['metadata']['name']}: {image} ready")
