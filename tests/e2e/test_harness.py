"""The parts of the e2e harness that need no Go binary (part of `make test`): the per-run PKI, the shipped
CRDs, the tools cache key. `make e2e` itself runs e2e/test_stack.py against the real control plane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from e2e import gen_crds, tools
from e2e.pki import make_pki, write_kubeconfig

CRDS = Path(gen_crds.__file__).parent / "crds"


def test_pki_chains_to_the_run_ca(tmp_path):
    pki = make_pki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki["ca.crt"].read_bytes())
    server = x509.load_pem_x509_certificate(pki["apiserver.crt"].read_bytes())
    admin = x509.load_pem_x509_certificate(pki["admin.crt"].read_bytes())
    server.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in pki.values())
    # A second run gets a different CA.
    assert make_pki(tmp_path / "other")["ca.crt"].read_bytes() != pki["ca.crt"].read_bytes()
    write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", pki)
    cfg = json.loads((tmp_path / "kc").read_text())
    assert cfg["users"][0]["user"]["client-key"] == str(pki["admin.key"])


def schema(name: str) -> dict:
    crd = json.loads((CRDS / name).read_text())
    (version,) = crd["spec"]["versions"]
    return crd, version["schema"]["openAPIV3Schema"]


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}/{i}")


@pytest.mark.parametrize("name", sorted(p.name for p in CRDS.glob("*.json")))
def test_crds_keep_the_upstream_structure_without_descriptions(name):
    crd, root = schema(name)
    assert crd["metadata"]["annotations"]["kubeflow-e2e/source"].split("@")[0] in {
        repo for repo, _, _ in gen_crds.SOURCES.values()
    }
    assert not root.get("x-kubernetes-preserve-unknown-fields"), "a stub that accepts anything"
    for path, node in walk(root):
        parent = path.rsplit("/", 1)[0]
        if "description" in node and not parent.endswith("/properties") and not path.endswith("/properties"):
            pytest.fail(f"{name}: description left at {path}")


def test_tfjob_and_workflow_schemas_are_the_full_ones():
    _, tfjob = schema("kubeflow.org_tfjobs.json")
    replica = tfjob["properties"]["spec"]["properties"]["tfReplicaSpecs"]["additionalProperties"]
    pod = replica["properties"]["template"]["properties"]["spec"]
    assert "containers" in pod["required"]
    assert pod["properties"]["containers"]["items"]["required"] == ["name"]
    assert "runPolicy" in tfjob["properties"]["spec"]["properties"]
    _, wf = schema("argoproj.io_workflows.json")
    template = wf["properties"]["spec"]["properties"]["templates"]["items"]
    # Typed down to the container: an unknown field or a wrong type there is refused by the API server.
    container = template["properties"]["container"]["properties"]
    assert container["image"] == {"type": "string"} and container["env"]["type"] == "array"
    assert template["properties"]["retryStrategy"]["properties"]["limit"]["x-kubernetes-int-or-string"] is True
    assert wf["required"] == ["metadata", "spec"]


def test_strip_keeps_a_property_named_description():
    node = {"description": "x", "properties": {"description": {"type": "string", "description": "y"}}}
    assert gen_crds.strip(node) == {"properties": {"description": {"type": "string"}}}


def test_tools_cache_is_keyed_by_every_version(monkeypatch):
    monkeypatch.delenv("KUBEFLOW_E2E_TOOLS", raising=False)
    key = tools.tools_dir().name
    for version in (tools.PULUMI, tools.K8S_PROVIDER_RELEASE, tools.ETCD, tools.KWOK, tools.KUBERNETES):
        assert version in key
    monkeypatch.setenv("KUBEFLOW_E2E_TOOLS", "/x/y")
    assert tools.tools_dir() == Path("/x/y")
