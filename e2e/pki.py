"""The control plane's certificates and kubeconfig: a CA made for each run, the API server's serving
certificate, the admin's client certificate (system:masters) and the service-account key (EC P-256,
`cryptography`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service's address in the control plane's SERVICE_CIDR


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key,
    issuer: x509.Name,
    issuer_key,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        usage = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, node_ip: str | None = None, node_name: str | None = None) -> dict[str, Path]:
    """CA, API server serving cert (127.0.0.1, localhost, kubernetes.default..., and `node_ip`), admin client
    cert (O=system:masters) and the service-account signing key; with `node_name`, a real node's certificates
    too: the kubelet's client (system:node:<name>, O=system:nodes) and serving certificates and kube-proxy's
    client (system:kube-proxy, bound by the default system:node-proxier binding). Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o600)
        out[name] = path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeflow-e2e-ca")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))

    srv_key = ec.generate_private_key(ec.SECP256R1())
    ips = ("127.0.0.1", SERVICE_IP, *((node_ip,) if node_ip else ()))
    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [
        x509.DNSName(d)
        for d in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    srv = _cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), srv_key, ca_name, ca_key, sans=sans
    )
    write("apiserver.crt", srv.public_bytes(serialization.Encoding.PEM))
    write("apiserver.key", _pem_key(srv_key))

    adm_key = ec.generate_private_key(ec.SECP256R1())
    adm = _cert(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "kubeflow-e2e-admin"),
            ]
        ),
        adm_key,
        ca_name,
        ca_key,
        client=True,
    )
    write("admin.crt", adm.public_bytes(serialization.Encoding.PEM))
    write("admin.key", _pem_key(adm_key))

    def client(name: str, cn: str, org: str | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []) + [
            x509.NameAttribute(NameOID.COMMON_NAME, cn)
        ]
        crt = _cert(x509.Name(attrs), key, ca_name, ca_key, client=True)
        write(f"{name}.crt", crt.public_bytes(serialization.Encoding.PEM))
        write(f"{name}.key", _pem_key(key))

    if node_name:
        client("kubelet-client", f"system:node:{node_name}", "system:nodes")
        client("kube-proxy", "system:kube-proxy")
        key = ec.generate_private_key(ec.SECP256R1())
        node_sans = [x509.DNSName(node_name)] + (
            [x509.IPAddress(ipaddress.ip_address(node_ip))] if node_ip else []
        )
        crt = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]), key, ca_name, ca_key,
                    sans=node_sans)
        write("kubelet.crt", crt.public_bytes(serialization.Encoding.PEM))
        write("kubelet.key", _pem_key(key))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write("sa.key", _pem_key(sa_key))
    write(
        "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return out


def write_kubeconfig(path: Path, server: str, pki: dict[str, Path], user: str = "admin") -> None:
    """A kubeconfig (JSON is valid YAML) with the `user` client certificate (admin: system:masters), context
    `kubeflow-e2e`."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(pki["ca.crt"])}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(pki[f"{user}.crt"]), "client-key": str(pki[f"{user}.key"])},
            }
        ],
        "contexts": [{"name": "kubeflow-e2e", "context": {"cluster": "e2e", "user": "admin"}}],
        "current-context": "kubeflow-e2e",
    }
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
