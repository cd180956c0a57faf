"""Pod Security Admission labels on every namespace the stack makes or installs into, as strict as the
upstream pods there allow, and the policy pack's exemptions no wider than that."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENFORCE = "pod-security.kubernetes.io/enforce"


def _labels(rendered, kind: str, name: str) -> dict:
    return rendered.one(kind, name)["metadata"].get("labels", {})


def test_each_namespace_enforces_what_its_pods_allow(prod):
    assert _labels(prod, "Namespace", "kubeflow-e2e")[ENFORCE] == "restricted"
    argo = _labels(prod, "Namespace", "argo")
    assert argo[ENFORCE] == "restricted" and argo["pod-security.kubernetes.io/warn"] == "restricted"
    kubeflow = _labels(prod, "Namespace", "kubeflow")  # a patch of the overlay's Namespace
    assert kubeflow[ENFORCE] == "baseline" and kubeflow["pod-security.kubernetes.io/warn"] == "restricted"
    # Fluid's CSI plugin and the Alluxio cache (host network, FUSE) need privileged pods: stated, not implied.
    assert _labels(prod, "Namespace", "fluid-system")[ENFORCE] == "privileged"
    assert _labels(prod, "Namespace", "kubeflow-e2e-cache")[ENFORCE] == "privileged"


def test_argos_pods_meet_restricted(prod):
    """Chart 1.0.18's containers are non-root and drop ALL (its values.yaml); the stack adds the seccomp
    profile restricted also requires, at pod level, and the limits."""
    (chart,) = [c for c in prod.by_type("kubernetes:helm.sh/v4:Chart") if c["name"] == "argo-workflows"]
    values = chart["inputs"]["values"]
    for part in ("controller", "server"):
        assert values[part]["podSecurityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert values[part]["resources"]["limits"]


def test_the_policy_exemptions_are_only_fluid_and_the_operator():
    config = json.loads((ROOT / "policy/config.json").read_text())
    exempt = {rule: set(c.get("excludeNamespaces", [])) for rule, c in config.items()}
    for rule in ("k8s-container-limits", "k8s-container-non-root", "k8s-container-drop-capabilities"):
        assert exempt[rule] == {"fluid-system", "kubeflow"}, rule


def test_the_cache_runs_on_the_container_network_behind_default_deny(prod):
    runtime = prod.one("AlluxioRuntime")["spec"]
    for part in ("master", "worker", "fuse"):
        assert runtime[part]["networkMode"] == "ContainerNetwork", part
    cache = "kubeflow-e2e-cache"
    policies = {p["metadata"]["name"]: p for p in prod.find("NetworkPolicy") if p["metadata"]["namespace"] == cache}
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Ingress only from the namespace's own pods: no namespaceSelector, no ipBlock anywhere.
    assert policies["allow-cache"]["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
