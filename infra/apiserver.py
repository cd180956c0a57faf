"""The API server as a NetworkPolicy peer: the addresses and port the `kubernetes` Service's Endpoints list,
which `infra.namespace` reads from the cluster at each preview and up for Argo's executor's egress."""

from __future__ import annotations


def apiserver_egress(subsets: list | None) -> list[dict]:
    """Egress to the addresses and ports the `kubernetes` Service's Endpoints list (the API server itself, where
    a CNI evaluates egress after kube-proxy has translated the Service address, as Calico, kindnet and the
    AWS VPC CNI do; Cilium needs `toEntities: [kube-apiserver]`, docs/deploy.md)."""

    def field(obj, name: str):  # a plain dict (mocks) or the SDK's output type
        return obj.get(name) if isinstance(obj, dict) and name in obj else getattr(obj, name, None)

    rules = []
    for subset in subsets or []:
        addresses = sorted(field(a, "ip") for a in field(subset, "addresses") or [])
        ports = field(subset, "ports") or []
        if addresses and ports:
            rules.append(
                {
                    "to": [{"ipBlock": {"cidr": f"{ip}/{128 if ':' in ip else 32}"}} for ip in addresses],
                    "ports": [{"protocol": field(p, "protocol") or "TCP", "port": field(p, "port")} for p in ports],
                }
            )
    if not rules:
        raise ValueError("the kubernetes Service in namespace default lists no endpoints: is this a cluster?")
    return rules
