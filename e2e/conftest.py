"""Fixtures for `make e2e`: the tools, one control plane for the session with the platform team's CRDs, the
engine, and the stand-in controllers. The tests in test_stack.py run in file order against one stack."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
from pathlib import Path

import pytest

from e2e import tools
from e2e.controllers import FakeControllers
from e2e.controlplane import ControlPlane
from e2e.engine import Engine

CRDS = Path(__file__).parent / "crds"
NAMESPACE = "kubeflow-e2e"


@pytest.fixture(scope="session")
def tools_root() -> Path:
    root = tools.tools_dir()
    missing = [b for b in tools.BINARIES if not (root / "bin" / b).exists()]
    if missing:
        pytest.fail(f"missing in {root / 'bin'}: {', '.join(missing)}; run `make e2e-tools` first", pytrace=False)
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


def install_crds(cp: ControlPlane) -> list[str]:
    """The platform team's step: the upstream CRDs (e2e/crds/, see e2e/gen_crds.py), then wait until each is
    Established."""
    names = []
    for path in sorted(CRDS.glob("*.json")):
        crd = json.loads(path.read_text())
        cp.api("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "POST", crd)
        names.append(crd["metadata"]["name"])
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            got = cp.api(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after 60 s")
            time.sleep(0.2)
    return names


@pytest.fixture(scope="session")
def cluster(tools_root, run_dir):
    cp = ControlPlane(tools_root / "bin", run_dir / "cluster", tools_root / "share" / "kwok-stages")
    t0 = time.monotonic()
    with cp:
        crds = install_crds(cp)
        print(
            f"control plane {cp.version()} up in {time.monotonic() - t0:.1f} s at {cp.server}; CRDs: {', '.join(crds)}"
        )
        yield cp
        cp.check_alive()


@pytest.fixture(scope="session")
def engine(tools_root, run_dir, cluster) -> Engine:
    return Engine(tools_root, run_dir / "pulumi", cluster.kubeconfig)


@pytest.fixture(scope="session")
def controllers(cluster):
    c = FakeControllers(cluster, NAMESPACE)
    c.start()
    yield c
    c.stop()


def get(cp: ControlPlane, path: str) -> dict | None:
    try:
        return cp.api(path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
