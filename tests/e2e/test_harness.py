"""The parts of the e2e harness that need no Go binary and no root (part of `make test`): the per-run PKI, the
tools cache key, the host snapshot the launcher compares. `make e2e` itself runs e2e/test_stack.py on the
real node."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509

from e2e import host, tools
from e2e.pki import make_pki, write_kubeconfig


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


def test_node_certificates_name_the_node_and_its_address(tmp_path):
    pki = make_pki(tmp_path / "pki", node_ip="10.200.0.2", node_name="node-a")
    ca = x509.load_pem_x509_certificate(pki["ca.crt"].read_bytes())
    client = x509.load_pem_x509_certificate(pki["kubelet-client.crt"].read_bytes())
    serving = x509.load_pem_x509_certificate(pki["kubelet.crt"].read_bytes())
    proxy = x509.load_pem_x509_certificate(pki["kube-proxy.crt"].read_bytes())
    for cert in (client, serving, proxy):
        cert.verify_directly_issued_by(ca)
    # The Node authorizer knows a kubelet by this exact name and group.
    assert client.subject.rfc4514_string() == "CN=system:node:node-a,O=system:nodes"
    assert proxy.subject.rfc4514_string() == "CN=system:kube-proxy"
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.200.0.2"]
    api = x509.load_pem_x509_certificate(pki["apiserver.crt"].read_bytes())
    api_ips = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    )
    assert "10.200.0.2" in {str(ip) for ip in api_ips}
    write_kubeconfig(tmp_path / "kc", "https://10.200.0.2:6443", pki, user="kubelet-client")
    assert json.loads((tmp_path / "kc").read_text())["users"][0]["user"]["client-key"] == str(pki["kubelet-client.key"])


def test_tools_cache_is_keyed_by_every_version(monkeypatch):
    monkeypatch.delenv("KUBEFLOW_E2E_TOOLS", raising=False)
    key = tools.tools_dir().name
    for version in (
        tools.PULUMI,
        tools.K8S_PROVIDER_RELEASE,
        tools.ETCD,
        tools.KUBERNETES,
        tools.TRAINING_OPERATOR,
        tools.ARGO,
        tools.COREDNS,
        tools.MINIO[-12:],
        tools.MC[-12:],
    ):
        assert version in key
    monkeypatch.setenv("KUBEFLOW_E2E_TOOLS", "/x/y")
    assert tools.tools_dir() == Path("/x/y")


def test_the_host_snapshot_sees_what_the_node_could_leave_behind():
    """The launcher's before/after comparison covers each kind of change the node makes to the host."""
    snap = host.snapshot()
    assert {"iptables", "links", "addresses", "routes", "netns", "mounts", *host.SYSCTLS} <= set(snap)
    assert "/proc" in snap["mounts"].splitlines()
    for key in host.SYSCTLS:
        assert snap[key].lstrip("-").isdigit(), (key, snap[key])
