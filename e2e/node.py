"""A real one-node Kubernetes for `make e2e`, inside the network namespace `e2e/host.py` made for the run.

    with RealNode(tools_root, run_dir) as node:   # in the run's network namespace (e2e/host.py)
        node.kubeconfig   # admin kubeconfig for https://10.200.0.2:6443
        node.ctr("images", "ls")

On top of the control plane of `e2e/controlplane.py` (etcd, kube-apiserver, controller-manager, scheduler),
bound to the node's address: Debian's containerd (with runc and the CNI bridge + host-local plugins), the
kubelet, kube-proxy (iptables mode) and CoreDNS (the cluster DNS, as a process on the node), all built by
`make e2e-tools` except containerd, runc and the CNI plugins (apt). The images `make e2e-images` built are
imported into containerd, whose root (content and snapshots) is kept in the tools cache between runs.

Settings this VM needs (measured; docs/e2e.md, "The real node"): cgroup v1 with the cgroupfs driver
(`failCgroupV1: false`), containerd's `restrict_oom_score_adj` (no CAP_SYS_RESOURCE in the bounding set),
a node address that is not loopback, the API server's `--kubelet-preferred-address-types=InternalIP,Hostname`.
Paths the kubelet and containerd hard-code (/var/lib/kubelet, /var/log/pods, /run/containerd) land on
overlays of /var and /run in this process's private mount namespace, so nothing is written to the host's.

The node changes nothing outside the namespace except what `e2e/host.py` saves and restores: three kernel
sysctls the kubelet sets and the `kubepods` cgroups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from e2e import images, tools
from e2e.controlplane import ControlPlane, ControlPlaneError
from e2e.pki import make_pki, write_kubeconfig

NODE_NAME = "kubeflow-e2e-node"
NODE_IP = "10.200.0.2"
POD_CIDR = "10.244.0.0/24"
CLUSTER_DNS = NODE_IP  # CoreDNS listens on the node's address
NODE_START_TIMEOUT = 180.0


def mount_private_paths(run_dir: Path) -> None:
    """In this (private) mount namespace: the cgroup v1 hierarchies again (`ip netns exec` remounts /sys,
    which leaves /sys/fs/cgroup empty), and overlays on /var and /run whose upper layers are in the run folder."""
    host = Path("/proc/1/mountinfo").read_text().splitlines()
    cg = [ln.split() for ln in host if " - cgroup " in ln or " - cgroup2 " in ln or "/sys/fs/cgroup " in ln]
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    if not any(Path("/sys/fs/cgroup").iterdir()):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup_root", "/sys/fs/cgroup"], check=True)
        for f in cg:
            target = f[4]
            sep = f.index("-")
            fstype, opts = f[sep + 1], f[sep + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            Path(target).mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", fstype, "-o", opts, fstype, target], check=True)
    for top in ("var", "run"):
        upper, work = run_dir / "overlay" / top, run_dir / "overlay" / f"{top}.work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/{top},upperdir={upper},workdir={work}", f"/{top}"],
            check=True,
        )


class RealNode(ControlPlane):
    address = NODE_IP

    def __init__(self, tools_root: Path, run_dir: Path):
        super().__init__(Path(tools_root) / "bin", Path(run_dir))
        self.tools_root = Path(tools_root)
        self.containerd_root = self.tools_root / "containerd"
        self.sock = self.dir / "containerd" / "containerd.sock"

    # --- the control plane, bound to the node's address ------------------------------------------------
    def _make_pki(self):
        return make_pki(self.dir / "pki", node_ip=NODE_IP, node_name=NODE_NAME)

    def _apiserver_flags(self) -> list[str]:
        pki = self.pki
        return [
            # 0.0.0.0 is only this network namespace's addresses: loopback and the node's.
            "--bind-address=0.0.0.0",
            f"--advertise-address={NODE_IP}",
            "--endpoint-reconciler-type=lease",
            # Logs, exec and port-forward reach the kubelet at its InternalIP (the node name does not resolve).
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki['admin.crt']}",
            f"--kubelet-client-key={pki['admin.key']}",
            f"--kubelet-certificate-authority={pki['ca.crt']}",
        ]

    # --- the node ----------------------------------------------------------------------------------------
    def _start_all(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        mount_private_paths(self.dir)
        self._sysctls()
        self._start_containerd()
        self._start_control_plane()
        self._start_coredns()
        self._start_kubelet()
        self._start_kube_proxy()
        self._wait("kubelet", self._node_ready, NODE_START_TIMEOUT)

    def _sysctls(self) -> None:
        # Per network namespace: they stay in the run's namespace.
        for key, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/route_localnet", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ):
            Path("/proc/sys", key).write_text(value)

    def _start_containerd(self) -> None:
        cdir = self.dir / "containerd"
        cni = self.dir / "cni" / "net.d"
        for d in (cdir, cni, self.containerd_root):
            d.mkdir(parents=True, exist_ok=True)
        (cni / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "kubeflow-e2e",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.dir / "cni" / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        config = self.dir / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(
            f"""version = 2
root = "{self.containerd_root}"
state = "{cdir / 'state'}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{cdir / 'opt'}"
[{cri}]
  sandbox_image = "{images.PAUSE}"
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE: a negative oom_score_adj fails every sandbox.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{cdir / 'runc'}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"""
        )
        log = self.dir / "logs" / "containerd.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.logs["containerd"] = log
        with open(log, "wb") as fh:
            self.procs["containerd"] = subprocess.Popen(
                ["containerd", "--config", str(config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 60)
        self.import_images()

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """`ctr -n k8s.io <args>` against this node's containerd."""
        proc = subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "k8s.io", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-2000:]}")
        return proc

    def import_images(self) -> dict[str, str]:
        """Imports every archive `make e2e-images` listed that containerd does not hold yet (the archive's
        image ID as a label); returns ref -> 'imported' | 'cached'."""
        listed = images.manifest()
        if not listed.exists():
            raise ControlPlaneError(f"{listed} is missing: run `make e2e-images` first")
        wanted: dict[str, str] = json.loads(listed.read_text())
        have = self.ctr("images", "ls").stdout
        out = {}
        for ref, archive in wanted.items():
            marker = f"kubeflow-e2e.archive={Path(archive).name}"
            if any(line.startswith(ref + " ") and marker in line for line in have.splitlines()):
                out[ref] = "cached"
                continue
            self.ctr("images", "import", archive)
            self.ctr("images", "label", ref, marker)
            out[ref] = "imported"
        self.imported = out
        return out

    def _start_coredns(self) -> None:
        corefile = self.dir / "Corefile"
        # Cluster names only: a name outside cluster.local gets NXDOMAIN here, never a query to the host's
        # resolver (these machines allow traffic only to loopback and the run's own namespaces).
        corefile.write_text(
            f"""cluster.local:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {self.kubeconfig} kubeflow-e2e
        pods insecure
    }}
    cache 5
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        )
        self._start("coredns", ["coredns", "-conf", str(corefile)])

    def _start_kubelet(self) -> None:
        pki = self.pki
        kdir = self.dir / "kubelet"
        kdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.dir / "kubelet.kubeconfig"
        write_kubeconfig(kubeconfig, self.server, pki, user="kubelet-client")
        resolv = self.dir / "resolv.conf"
        resolv.write_text(f"nameserver {CLUSTER_DNS}\n")
        config = self.dir / "kubelet.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    # cgroup v1 here, and only the cgroupfs driver works on it.
                    "cgroupDriver": "cgroupfs",
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "address": NODE_IP,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(pki["ca.crt"])},
                    },
                    "authorization": {"mode": "Webhook"},
                    "tlsCertFile": str(pki["kubelet.crt"]),
                    "tlsPrivateKeyFile": str(pki["kubelet.key"]),
                    "clusterDNS": [CLUSTER_DNS],
                    "clusterDomain": "cluster.local",
                    "resolvConf": str(resolv),
                    "containerRuntimeEndpoint": f"unix://{self.sock}",
                    "podLogsDir": "/var/log/pods",
                    "serializeImagePulls": False,
                    # The disk is shared with everything else on the machine: no evictions for disk, keep images.
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "protectKernelDefaults": False,
                    "maxPods": 60,
                    "registerNode": True,
                    "rotateCertificates": False,
                    "serverTLSBootstrap": False,
                },
                indent=2,
            )
        )
        self._start(
            "kubelet",
            [
                "kubelet",
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={kdir}",
                f"--cert-dir={self.dir / 'kubelet-certs'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        kubeconfig = self.dir / "kube-proxy.kubeconfig"
        write_kubeconfig(kubeconfig, self.server, self.pki, user="kube-proxy")
        config = self.dir / "kube-proxy.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "iptables",
                    "clientConnection": {"kubeconfig": str(kubeconfig)},
                    "hostnameOverride": NODE_NAME,
                    "clusterCIDR": POD_CIDR,
                    "bindAddress": NODE_IP,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # Zero: kube-proxy leaves the host-wide nf_conntrack_max and timeouts alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                },
                indent=2,
            )
        )
        self._start("kube-proxy", ["kube-proxy", f"--config={config}", "--v=1"])

    def _node_ready(self) -> bool:
        node = self.api(f"/api/v1/nodes/{NODE_NAME}")
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in (node.get("status") or {}).get("conditions") or []
        )

    def kubelet_version(self) -> str:
        return self.api(f"/api/v1/nodes/{NODE_NAME}")["status"]["nodeInfo"]["kubeletVersion"]

    # --- what containerd holds ----------------------------------------------------------------------------
    def containers(self) -> list[str]:
        """Every container containerd holds in the CRI namespace (pod sandboxes included), as ID lines."""
        return [ln for ln in self.ctr("containers", "ls", "-q").stdout.split() if ln]

    def container_labels(self) -> list[dict[str, str]]:
        """The labels of every container containerd holds in the CRI namespace. One the kubelet removes between
        the listing and the lookup is gone, not an error: it is left out."""
        out = []
        for cid in self.containers():
            info = self.ctr("containers", "info", cid, check=False)
            if info.returncode != 0:
                if "not found" in info.stdout:
                    continue
                raise ControlPlaneError(f"ctr containers info {cid} failed ({info.returncode}): {info.stdout[-2000:]}")
            out.append(json.loads(info.stdout).get("Labels") or {})
        return out

    def sandboxes_and_containers(self) -> dict[str, int]:
        """CRI's kinds of what containerd holds: {'sandbox': n, 'container': m}."""
        out = {"sandbox": 0, "container": 0}
        for labels in self.container_labels():
            kind = labels.get("io.cri-containerd.kind", "container")
            out[kind] = out.get(kind, 0) + 1
        return out

    def ours_in_containerd(self, namespace: str) -> list[str]:
        """Sandboxes and containers containerd holds for pods of `namespace` (CRI's pod labels), as
        '<kind> <pod>/<container>'."""
        out = []
        for labels in self.container_labels():
            if labels.get("io.kubernetes.pod.namespace") == namespace:
                kind = labels.get("io.cri-containerd.kind", "container")
                pod, container = labels.get("io.kubernetes.pod.name"), labels.get("io.kubernetes.container.name", "")
                out.append(f"{kind} {pod}/{container}")
        return out

    def clear_containers(self) -> None:
        """Kills and removes every task and container (so containerd's kept root holds images only)."""
        for line in self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]:
            tid = line.split()[0]
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", tid, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = [ln.split()[0] for ln in self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]]
            for tid in left:
                self.ctr("tasks", "rm", "-f", tid, check=False)
            if not left:
                break
            time.sleep(0.5)
        ids = self.containers() if self.procs.get("containerd") and self.procs["containerd"].poll() is None else []
        if ids:
            self.ctr("containers", "rm", *ids, check=False)

    def stop(self) -> None:
        """Stops the node's processes (kubelet and kube-proxy first, containerd last), after removing every
        container so none is left running."""
        for name in ("kube-proxy", "kubelet"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        containerd = self.procs.get("containerd")
        if containerd is not None and containerd.poll() is None:
            try:
                self.clear_containers()
            except (ControlPlaneError, subprocess.TimeoutExpired, OSError):
                pass
        super().stop()


def tools_ready(root: Path) -> list[str]:
    """The binaries and programs the real node needs that are missing."""
    missing = [b for b in tools.BINARIES if not (root / "bin" / b).exists()]
    missing += [p for p in ("containerd", "runc", "ctr", "ip", "iptables") if not shutil.which(p)]
    missing += [] if Path("/usr/lib/cni/bridge").exists() else ["/usr/lib/cni/bridge"]
    return missing


def in_node_namespace() -> bool:
    return os.environ.get("KUBEFLOW_E2E_NETNS", "") != ""
