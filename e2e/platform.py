"""The platform team's step on the real node: the Kubeflow training operator and Argo Workflows, installed from
the kustomize manifests their Go modules carry, with the images `make e2e-images` built from the same modules.

- Training operator v1.9.4: `manifests/overlays/standalone` (namespace `kubeflow`, the six CRDs, RBAC, the
  validating webhook and its Service, the operator Deployment), unchanged.
- Argo Workflows v4.0.7: `manifests/cluster-install` (the full CRDs, the workflow-controller watching every
  namespace) with the controller's image tag pinned (upstream says `:latest`, which the kubelet would try to
  pull) and the executor's securityContext in its ConfigMap (`controller_config`); the Argo server is left
  out (the stack's pods and the tests use the API server only).

The stack then runs with `operator.install: false` and `argo.install: false`, as it does on a cluster whose
platform team installed these. `kubectl kustomize` renders the overlays and `kubectl apply --server-side`
applies them (the CRDs are too large for client-side apply).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from e2e import images, tools

OPERATOR_NAMESPACE = "kubeflow"
ARGO_NAMESPACE = "argo"


def module_dir(mod: str, version: str) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{mod}@{version}"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        # The namespace has no network: `make e2e-tools` put the module in the cache.
        env={**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod"},
    ).stdout
    return Path(json.loads(out)["Dir"])


def kubectl(node, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(node.bin / "kubectl"), f"--kubeconfig={node.kubeconfig}", *args],
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    return proc.stdout


def overlay(folder: Path, manifests: Path, base: str, namespace: str | None, image_tags: dict[str, str]) -> Path:
    """A kustomization over `base`, a folder of a module's `manifests/` (copied under `folder`: kustomize takes
    only relative paths to bases)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(manifests, folder / "manifests", dirs_exist_ok=True)
    k = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"manifests/{base}"],
        "images": [{"name": n, "newTag": t} for n, t in image_tags.items()],
    }
    if namespace:
        k["namespace"] = namespace
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return folder


def render(node, folder: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(kubectl(node, "kustomize", str(folder))) if d]


def apply(node, docs: list[dict], field_manager: str) -> None:
    kubectl(
        node,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={field_manager}",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )


def wait_available(node, namespace: str, name: str, timeout: float = 300) -> float:
    t0 = time.monotonic()
    kubectl(node, "-n", namespace, "rollout", "status", f"deployment/{name}", f"--timeout={int(timeout)}s",
            timeout=timeout + 30)
    return time.monotonic() - t0


def install(node, work: Path) -> dict[str, float]:
    """Installs both and waits until each controller is available; returns name -> seconds."""
    times: dict[str, float] = {}
    trainer = module_dir("github.com/kubeflow/trainer", tools.TRAINING_OPERATOR)
    op_docs = render(node, overlay(work / "operator", trainer / "manifests", "overlays/standalone", None, {}))
    argo = tools.tools_dir() / "src" / "argo-module"  # the module copy e2e/tools.py built from
    argo_docs = render(
        node,
        overlay(
            work / "argo",
            argo / "manifests",
            "cluster-install",
            ARGO_NAMESPACE,
            {"quay.io/argoproj/workflow-controller": tools.ARGO},
        ),
    )
    argo_docs = [d for d in argo_docs if "argo-server" not in d["metadata"]["name"]]
    for doc in argo_docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "workflow-controller-configmap":
            doc["data"] = controller_config()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGO_NAMESPACE}}
    t0 = time.monotonic()
    crds = [d for d in op_docs + argo_docs if d["kind"] == "CustomResourceDefinition"]
    apply(node, crds, "platform-team")
    kubectl(node, "wait", "--for=condition=Established", "--timeout=120s",
            *(f"crd/{crd['metadata']['name']}" for crd in crds))
    apply(node, [namespace] + [d for d in op_docs + argo_docs if d["kind"] != "CustomResourceDefinition"],
          "platform-team")
    times["apply"] = time.monotonic() - t0
    times["training-operator"] = wait_available(node, OPERATOR_NAMESPACE, "training-operator")
    times["workflow-controller"] = wait_available(node, ARGO_NAMESPACE, "workflow-controller")
    return times


def controller_config() -> dict[str, str]:
    """The controller settings the stack's pods need from a cluster's own Argo, as the stack's chart values
    set them (infra/argo.py): the executor's securityContext that Pod Security `restricted` admits (upstream's
    default executor has none, so every workflow pod in our namespace would be refused), and Workflows
    restricted to referenced templates."""
    from infra.argo import RESTRICTION
    from infra.podspec import executor_security

    return {
        "executor": yaml.safe_dump({"securityContext": executor_security()}),
        # Workflows run only the stack's templates, as the stack's own Argo install sets (infra/argo.py).
        "workflowRestrictions": yaml.safe_dump({"templateReferencing": RESTRICTION}),
    }


def expected_images() -> dict[str, str]:
    """The images the platform's pods run, by component (for the e2e's output)."""
    return {name: ref for name, (ref, _) in images.PLATFORM.items()}
