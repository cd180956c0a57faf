"""The connectivity table: over the rendered NetworkPolicies, every path the pipeline needs is allowed and a
sample of paths it must not need is denied.

The evaluator is network-config-analyzer 2.1.0 (np-guard, IBM; `nca --connectivity`, from .venv-netpol, see
requirements/netpol.txt), which implements Kubernetes NetworkPolicy semantics: a pod selected by no policy of
a direction is open in that direction, allows add up, a connection needs the source's egress and the
destination's ingress, `ipBlock` peers and `endPort` ranges. It is given the rendered policies and the pods the
stack's objects make, with the labels each controller gives them:

- Deployments, Jobs and TFJob replicas: their pod template's labels;
- Argo workflow pods: `spec.podMetadata` labels, the template's own, and `workflows.argoproj.io/workflow`
  (set by the workflow controller on every pod of a workflow);
- Fluid's DataLoad loader: `role: dataload-pod`, `app: alluxio`, `targetDataset` (Fluid 1.0.8,
  charts/fluid-dataloader/alluxio/templates/job.yaml);
- outside the namespace: CoreDNS (`k8s-app: kube-dns`), Argo's server (`app.kubernetes.io/name:
  argo-workflows-server`, chart 1.0.18), the training operator, and a pod of an unrelated namespace;
- Fluid's Alluxio master, workers and FUSE pods (`role: alluxio-master` / `alluxio-worker` / `alluxio-fuse`,
  charts/alluxio/templates/ at Fluid 1.0.8), on the container network in the cache namespace;
- addresses: the API server, a node, an S3 address on the internet, the cloud's metadata address and a DNS
  server outside the cluster.

Not in the table, because NetworkPolicy does not govern them: `kubectl port-forward` (the kubelet enters the
pod's network namespace) and the kubelet's probes ("traffic to and from the node where a Pod is running is
always allowed", kubernetes.io > Concepts > Services > Network Policies).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from render import Rendered
from tests.render.renders import RENDERS

ROOT = Path(__file__).resolve().parents[2]
NS = "kubeflow-e2e"
API_SERVER = "ip:172.18.0.2"  # the `kubernetes` Service's endpoint, as the render's mocks read it
API_PORT = 6443
NODE = "ip:10.0.3.17"  # a node (where host-network pods would listen)
INTERNET = "ip:52.217.0.10"  # an S3 address
METADATA = "ip:169.254.169.254"  # the cloud's instance metadata (and its credentials)
RESOLVER = "ip:8.8.8.8"  # a DNS server outside the cluster

VARIANTS = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "dev-access": ("dev", {"access.fromNamespace": "ingress-nginx"}),
    "dev-gpu": ("dev", {"training.gpus": 1}),
    "prod-gpu": ("prod", {"training.gpus": 1,
                          "image.trainerGpu": "registry.example.com/kubeflow-e2e/trainer-gpu:0.1.0"}),
}

OUTSIDE = [
    ("kube-system", "coredns", {"k8s-app": "kube-dns"}),
    ("argo", "argo-server", {"app.kubernetes.io/name": "argo-workflows-server"}),
    ("argo", "argo-controller", {"app.kubernetes.io/name": "argo-workflows-workflow-controller"}),
    ("kubeflow", "training-operator", {"control-plane": "kubeflow-training-operator"}),
    ("elsewhere", "intruder", {"app": "intruder"}),
    ("ingress-nginx", "proxy", {"app.kubernetes.io/name": "ingress-nginx"}),
]


def nca() -> Path:
    venv = Path(os.environ.get("NETPOL_VENV") or ROOT / ".venv-netpol")
    path = (venv if venv.is_absolute() else ROOT / venv) / "bin" / "nca"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make install` builds {venv} from requirements/netpol.txt")
    return path


def workflow_pods(spec: dict, workflow: str) -> list[tuple[str, dict]]:
    base = {**((spec.get("podMetadata") or {}).get("labels") or {}), "workflows.argoproj.io/workflow": workflow}
    return [
        (f"{workflow}-{t['name']}", {**base, **((t.get("metadata") or {}).get("labels") or {})})
        for t in spec.get("templates", [])  # a Workflow that references a template has none
        if "container" in t or "script" in t or "resource" in t
    ]


def pods(r: Rendered) -> list[tuple[str, str, dict]]:
    """(namespace, name, labels) of every pod the rendered objects make, and the outside ones."""
    out = []
    for kind in ("Deployment", "Job"):
        for m in r.find(kind):
            out.append((NS, m["metadata"]["name"], m["spec"]["template"]["metadata"]["labels"]))
    for rtype, spec in r.one("TFJob")["spec"]["tfReplicaSpecs"].items():
        out.append((NS, f"{rtype.lower()}-0", spec["template"]["metadata"]["labels"]))
    for kind in ("Workflow", "WorkflowTemplate"):
        for m in r.find(kind):
            out += [(NS, name, labels) for name, labels in workflow_pods(m["spec"], m["metadata"]["name"])]
    for m in r.find("DataLoad"):
        labels = {"role": "dataload-pod", "app": "alluxio", "targetDataset": m["spec"]["dataset"]["name"],
                  "release": f"{m['metadata']['name']}-load"}
        out.append((m["metadata"]["namespace"], "dataload-loader", labels))  # beside the cache
        # The cache's own pods, on the container network (Fluid 1.0.8 charts/alluxio/templates/).
        for role in ("alluxio-master", "alluxio-worker", "alluxio-fuse"):
            out.append((m["metadata"]["namespace"], role, {"app": "alluxio", "role": role, "release": "mnist"}))
    return out + OUTSIDE


WORK: list[Path] = []  # the module's temporary folder (set by the fixture below)


@pytest.fixture(scope="module", autouse=True)
def _work(tmp_path_factory):
    WORK.append(tmp_path_factory.mktemp("connectivity"))
    yield
    WORK.pop()
    table.cache_clear()


def run_nca(work: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(nca()), "--connectivity", str(work / "policies"), "--pod_list", str(work / "pods.yaml"),
                           "--ns_list", str(work / "ns.yaml"), "-o", "txt_no_fw_rules"],
                          capture_output=True, text=True, timeout=120)


@functools.cache
def table(name: str) -> list[tuple[str, str, str]]:
    """`nca --connectivity` over the variant's policies and pods: (source, destination, connections) lines."""
    stack, overrides = VARIANTS[name]
    r = RENDERS(stack, overrides)
    work = WORK[-1] / name
    (work / "policies").mkdir(parents=True, exist_ok=True)
    for m in r.find("NetworkPolicy"):
        # by namespace too: the cache namespace has its own `default-deny` and `allow-s3`
        (work / "policies" / f"{m['metadata']['namespace']}-{m['metadata']['name']}.yaml").write_text(yaml.safe_dump(m))
    everyone = pods(r)
    (work / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": ns, "labels": labels},
         "spec": {"containers": [{"name": "main", "image": "x"}]}} for ns, n, labels in everyone]}))
    namespaces = sorted({ns for ns, _, _ in everyone})
    (work / "ns.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList", "items": [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}} for ns in namespaces]}))
    proc = run_nca(work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if " => " in line]
    assert lines, proc.stdout + proc.stderr
    out = []
    for line in lines:
        pair, _, conn = line.partition(" : ")
        src, _, dst = pair.partition(" => ")
        out.append((src.removesuffix("[Pod]"), dst.removesuffix("[Pod]"), conn))
    return out


def _covers(conn: str, proto: str, port: int) -> bool:
    if conn.strip() == "All connections":
        return True
    for group in re.findall(r"\{([^}]*)\}", conn):
        protos = re.search(r"protocols:([A-Z, ]+?)(,dst_ports:|$)", group)
        if not protos or proto not in [p.strip() for p in protos.group(1).split(",")]:
            continue
        ports = re.search(r"dst_ports:([\d,\- ]+)", group)
        if not ports:
            return True
        for part in ports.group(1).split(","):
            low, _, high = part.strip().partition("-")
            if int(low) <= port <= int(high or low):
                return True
    return False


def _matches(endpoint: str, key: str) -> bool:
    if not endpoint.startswith("ip:"):
        return endpoint == key
    if re.fullmatch(r"[\d.]+", key):  # one address (nca prints a /32 so)
        key = f"{key}-{key}"
    if "/" in key or re.match(r"^[\d.]+-[\d.]+$", key) is None:
        return False
    low, high = (ipaddress.ip_address(x) for x in key.split("-"))
    return low <= ipaddress.ip_address(endpoint[3:]) <= high


def allowed(name: str, src: str, dst: str, proto: str, port: int) -> bool:
    """Whether the policies let `src` open `proto`/`port` to `dst` ("ns/pod" or "ip:a.b.c.d")."""
    return any(_matches(src, s) and _matches(dst, d) and _covers(conn, proto, port)
               for s, d, conn in table(name))


def p(name: str) -> str:
    return f"{CACHE_NS if name == 'dataload-loader' or name.startswith('alluxio-') else NS}/{name}"


CACHE_NS = f"{NS}-cache"  # Fluid's cache runtime and its DataLoad loader (infra/fluid.py)


S3_CLIENTS_DEV = ["prepare-data-prepare-data", "chief-0", "worker-0", "serving", "tensorboard",
                  "retrain-mnist-evaluate", "retrain-mnist-prepare-data", "minio-bucket"]
EVERY_POD = ["prepare-data-prepare-data", "chief-0", "worker-0", "serving", "tensorboard", "retrain-mnist-train"]

NEEDED = {
    "dev": [
        *[(p("chief-0"), p("worker-0"), "TCP", 2222), (p("worker-0"), p("chief-0"), "TCP", 2222)],
        *[(p(c), p("minio"), "TCP", 9000) for c in S3_CLIENTS_DEV],
        *[(p(c), "kube-system/coredns", proto, 53) for c in EVERY_POD + ["minio"] for proto in ("UDP", "TCP")],
        ("argo/argo-server", p("minio"), "TCP", 9000),  # archived logs in MinIO mode
        *[(p(c), API_SERVER, "TCP", API_PORT) for c in ("prepare-data-prepare-data", "retrain-mnist-train")],
    ],
    "prod": [
        *[(p("chief-0"), p("worker-0"), "TCP", 2222), (p("worker-0"), p("chief-0"), "TCP", 2222)],
        *[(p(c), INTERNET, "TCP", 443) for c in ("prepare-data-prepare-data", "chief-0", "worker-0", "serving",
                                                 "tensorboard", "retrain-mnist-evaluate")],
        *[(p(c), "kube-system/coredns", "UDP", 53) for c in EVERY_POD + ["dataload-loader"]],
        # the loader and FUSE reach the Alluxio master and workers on the container network, on the ports
        # Fluid 1.0.8 allocates from the chart's `runtime.alluxio.portRange`, which infra/fluid.py pins
        *[(p(a), p(b), "TCP", port) for a in ("dataload-loader", "alluxio-fuse") for b in ("alluxio-master",
          "alluxio-worker") for port in (20000, 23456, 26000)],
        *[(p(a), INTERNET, "TCP", 443) for a in ("alluxio-master", "alluxio-worker")],  # the bucket
        *[(p(a), "kube-system/coredns", "UDP", 53) for a in ("alluxio-master", "alluxio-worker", "alluxio-fuse")],
        (p("retrain-mnist-train"), API_SERVER, "TCP", API_PORT),
    ],
    "dev-access": [
        ("ingress-nginx/proxy", p("serving"), "TCP", 8501),
        ("ingress-nginx/proxy", p("serving"), "TCP", 8500),
        ("ingress-nginx/proxy", p("tensorboard"), "TCP", 6006),
    ],
}

DENIED = {
    "dev": [
        ("elsewhere/intruder", p("serving"), "TCP", 8501),
        ("elsewhere/intruder", p("tensorboard"), "TCP", 6006),
        ("ingress-nginx/proxy", p("serving"), "TCP", 8501),  # only once access.fromNamespace names it
        ("elsewhere/intruder", p("minio"), "TCP", 9000),
        ("elsewhere/intruder", p("chief-0"), "TCP", 2222),
        ("argo/argo-server", p("chief-0"), "TCP", 2222),
        ("kubeflow/training-operator", p("worker-0"), "TCP", 2222),
        ("argo/argo-controller", p("minio"), "TCP", 9000),
        (p("serving"), p("chief-0"), "TCP", 2222),
        (p("prepare-data-prepare-data"), p("chief-0"), "TCP", 2222),
        (p("chief-0"), p("serving"), "TCP", 8501),
        (p("chief-0"), INTERNET, "TCP", 443),  # dev's store is MinIO: nothing goes out
        (p("chief-0"), API_SERVER, "TCP", API_PORT),  # no token, no need
        (p("serving"), API_SERVER, "TCP", API_PORT),
        # the workflow pods reach the API server's own address and port only, not any address on 443/6443
        *[(p(c), dst, "TCP", port) for c in ("prepare-data-prepare-data", "retrain-mnist-train")
          for dst, port in ((INTERNET, 443), (INTERNET, 6443), (NODE, 6443), ("ip:10.96.0.1", 443))],
        (p("minio"), INTERNET, "TCP", 443),
        (p("tensorboard"), p("minio"), "TCP", 9001),  # the console port
        (p("chief-0"), "kube-system/coredns", "TCP", 9153),  # DNS only
        *[(p(c), RESOLVER, "UDP", 53) for c in ("chief-0", "minio", "serving")],  # DNS to the cluster's only
    ],
    "prod": [
        (p("dataload-loader"), INTERNET, "TCP", 443),
        (p("dataload-loader"), NODE, "TCP", 20000),  # the cache is not on the host network any more
        (p("dataload-loader"), p("chief-0"), "TCP", 2222),
        # nothing outside the cache namespace reaches the cache (Alluxio checks no permissions there)
        *[(s, p(c), "TCP", 20000) for s in (p("chief-0"), "elsewhere/intruder", "argo/argo-server")
          for c in ("alluxio-master", "alluxio-worker")],
        (p("alluxio-worker"), METADATA, "TCP", 443),
        (p("alluxio-fuse"), INTERNET, "TCP", 443),  # only the master and workers read the bucket
        (p("alluxio-worker"), RESOLVER, "UDP", 53),
        ("elsewhere/intruder", p("serving"), "TCP", 8501),
        (p("serving"), INTERNET, "TCP", 80),
        *[(p(c), METADATA, "TCP", 443) for c in ("chief-0", "serving", "tensorboard")],  # S3's port, not there
        *[(p(c), RESOLVER, proto, 53) for c in ("chief-0", "dataload-loader") for proto in ("UDP", "TCP")],
    ],
    "dev-access": [
        ("elsewhere/intruder", p("serving"), "TCP", 8501),
        ("ingress-nginx/proxy", p("chief-0"), "TCP", 2222),
        ("ingress-nginx/proxy", p("minio"), "TCP", 9000),
    ],
}

# With GPUs every path of the CPU stack holds as before, and NCCL's sockets between the training pods (on ports
# the kernel picks) are open too, between them only.
for _stack in ("dev", "prod"):
    NEEDED[f"{_stack}-gpu"] = [*NEEDED[_stack], *[(p(a), p(b), "TCP", port)
                                                  for a, b in (("chief-0", "worker-0"), ("worker-0", "chief-0"))
                                                  for port in (1024, 43117, 65535)]]
    DENIED[f"{_stack}-gpu"] = [*DENIED[_stack], ("elsewhere/intruder", p("chief-0"), "TCP", 43117),
                               (p("serving"), p("worker-0"), "TCP", 43117),
                               (p("chief-0"), p("serving"), "TCP", 43117)]


@pytest.mark.parametrize("variant, src, dst, proto, port",
                         [(v, *row) for v, rows in NEEDED.items() for row in rows])
def test_needed_path_is_allowed(variant, src, dst, proto, port):
    assert allowed(variant, src, dst, proto, port), f"{src} -> {dst} {proto}/{port} is blocked in {variant}"


@pytest.mark.parametrize("variant, src, dst, proto, port",
                         [(v, *row) for v, rows in DENIED.items() for row in rows])
def test_unneeded_path_is_denied(variant, src, dst, proto, port):
    assert not allowed(variant, src, dst, proto, port), f"{src} -> {dst} {proto}/{port} is open in {variant}"


def test_the_table_sees_every_pod_of_the_render():
    """The analyzer was given (and reports on) each pod; a pod missing from the table would pass vacuously."""
    seen = {name for src, dst, _ in table("dev") for name in (src, dst)}
    for c in S3_CLIENTS_DEV + ["minio"]:
        assert p(c) in seen, c


def test_the_evaluator_catches_a_missing_allow():
    """Without allow-training-peers the chief cannot reach its worker: the table is not vacuous."""
    import shutil

    table("dev")  # builds the files
    broken = WORK[-1] / "dev-broken"
    shutil.copytree(WORK[-1] / "dev", broken)
    (broken / "policies" / f"{NS}-allow-training-peers.yaml").unlink()
    proc = run_nca(broken)
    assert proc.returncode == 0, proc.stderr
    assert f"{p('chief-0')}[Pod] => {p('worker-0')}[Pod]" not in proc.stdout
    assert f"{p('chief-0')}[Pod] => {p('minio')}[Pod]" in proc.stdout
