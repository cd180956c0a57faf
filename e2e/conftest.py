"""Fixtures for `make e2e`: the tools, the real node (control plane, containerd, kubelet, kube-proxy, CoreDNS)
in the run's network namespace, the platform team's training operator and Argo, and the engine. The tests in
test_stack.py run in file order against one stack."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
from pathlib import Path

import pytest

from e2e import platform
from e2e.controlplane import ControlPlane
from e2e.engine import Engine
from e2e.node import RealNode, in_node_namespace, tools_ready

NAMESPACE = "kubeflow-e2e"


@pytest.fixture(scope="session")
def tools_root() -> Path:
    from e2e import tools

    if not in_node_namespace():
        pytest.fail("the e2e runs inside the node's network namespace: run `make e2e` (python -m e2e.host)",
                    pytrace=False)
    root = tools.tools_dir()
    missing = tools_ready(root)
    if missing:
        # Each part says itself what it lacks (the node, the platform's images, the engine): a partial toolset
        # still runs the node's own checks.
        print(f"\nnot built yet: {', '.join(missing)} (make e2e-tools, make e2e-images)")
    return root


@pytest.fixture(scope="session")
def run_dir():
    """Per-run folder (certificates, etcd, logs, Pulumi state); kept with KEEP_E2E=1 or after a failure."""
    path = Path(tempfile.mkdtemp(prefix="kubeflow-e2e-"))
    print(f"\ne2e run folder: {path}")
    yield path
    if not os.environ.get("KEEP_E2E") and not getattr(run_dir, "failed", False):
        shutil.rmtree(path, ignore_errors=True)
    else:
        print(f"\ne2e run folder kept: {path}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        run_dir.failed = True


@pytest.fixture(scope="session")
def cluster(tools_root, run_dir):
    node = RealNode(tools_root, run_dir / "cluster")
    t0 = time.monotonic()
    with node:
        print(
            f"node Ready in {time.monotonic() - t0:.1f} s, API server {node.server}, kubelet {node.kubelet_version()}; "
            "images in containerd: "
            + ", ".join(f"{ref.rsplit('/', 1)[1]} ({how})" for ref, how in node.imported.items())
        )
        yield node
        node.check_alive()


@pytest.fixture(scope="session")
def installed_platform(cluster, run_dir) -> dict[str, float]:
    """The platform team's training operator and Argo (e2e/platform.py); returns the install times."""
    times = platform.install(cluster, run_dir / "platform")
    print("platform installed: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    return times


@pytest.fixture(scope="session")
def engine(tools_root, run_dir, cluster) -> Engine:
    return Engine(tools_root, run_dir / "pulumi", cluster.kubeconfig)


def get(cp: ControlPlane, path: str) -> dict | None:
    try:
        return cp.api(path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
