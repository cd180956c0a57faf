"""`make e2e`'s launcher: runs the e2e tests inside a network namespace made for the run, and gives the host
back as it found it, on failure and on Ctrl-C too.

    python -m e2e.host [pytest args...]     # as root; `make e2e` calls it

These machines allow traffic only to loopback and to addresses inside network namespaces the run made, so
the node's address (10.200.0.2, on a veth pair whose two ends are both in the namespace), its CNI bridge and
its pods live in the namespace `kubeflow-e2e`, and so do the tests, the Pulumi CLI and the provider, which
reach the API server and the Services from there.

What is saved first and restored at the end: the kubelet's global sysctls (`vm.overcommit_memory`,
`kernel.panic`, `kernel.panic_on_oops`); the `kubepods` cgroups it makes in every hierarchy (their
processes killed, then removed depth-first); the namespace and its `/run/netns` mount. Everything else the
node changes (iptables, routes, the bridge, conntrack, /var and /run) stays inside the namespace or its
private mounts and goes with them. A snapshot of the host's iptables, links, addresses, routes, namespaces,
mounts and those sysctls is taken before and compared after: a difference fails the run, naming it.

One run at a time per machine: a lock file (`~/.cache/kubeflow-e2e/node.lock`); a second run says who holds it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

NETNS = "kubeflow-e2e"
NODE_CIDR = "10.200.0.2/24"
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAMES = ("kubepods", "kubepods.slice", "k8s.io")
# What the node needs from Debian (`.ci/run` installs them) and the programs that show they are there.
APT_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "buildah", "debootstrap")
PROGRAMS = ("containerd", "runc", "ctr", "iptables", "ip", "buildah", "debootstrap")
LOCK = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubeflow-e2e" / "node.lock"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(args), check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        if check:
            raise
        return subprocess.CompletedProcess(list(args), 127, "")


def snapshot() -> dict[str, str]:
    """What the run must leave as it was: host iptables, links, addresses, routes, netns list, mounts, sysctls."""
    mounts = "\n".join(sorted(ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()))
    snap = {
        "iptables": sh("iptables-save", check=False).stdout,
        "links": sh("ip", "-br", "link", check=False).stdout,
        "addresses": sh("ip", "-br", "addr", check=False).stdout,
        "routes": sh("ip", "route", check=False).stdout,
        "netns": sh("ip", "netns", "list", check=False).stdout,
        "mounts": mounts,
    }
    for key in SYSCTLS:
        snap[key] = Path("/proc/sys", key).read_text().strip()
    # iptables-save prints when it ran: compare the rules only.
    snap["iptables"] = "\n".join(ln for ln in snap["iptables"].splitlines() if not ln.startswith("#"))
    return snap


def cgroup_dirs() -> list[Path]:
    """Every kubepods (and containerd k8s.io) cgroup folder, deepest first."""
    found: list[Path] = []
    if not CGROUP_ROOT.exists():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        for name in CGROUP_NAMES:
            top = hierarchy / name
            if top.is_dir():
                found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_and_remove_cgroups() -> list[str]:
    """Kills what still runs in the kubepods cgroups (pods' processes), then removes the folders."""
    left = []
    for _ in range(3):
        pids = set()
        for d in cgroup_dirs():
            try:
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(0.5)
        left = []
        for d in cgroup_dirs():
            try:
                d.rmdir()
            except OSError:
                left.append(str(d))
        if not left:
            break
        time.sleep(1)
    return left


def netns_pids() -> list[int]:
    out = sh("ip", "netns", "pids", NETNS, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def remove_netns() -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = netns_pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(2 if sig == signal.SIGTERM else 0.5)
    if NETNS in sh("ip", "netns", "list", check=False).stdout.split():
        sh("ip", "netns", "del", NETNS, check=False)
    path = Path("/run/netns") / NETNS
    if path.exists():
        sh("umount", str(path), check=False)
        path.unlink(missing_ok=True)


def make_netns() -> None:
    sh("ip", "netns", "add", NETNS)

    def ns(*args: str) -> None:
        sh("ip", "netns", "exec", NETNS, *args)

    ns("ip", "link", "set", "lo", "up")
    # No dummy interfaces (the kernel runs with nomodule): a veth pair, both ends inside, gives the node its address.
    ns("ip", "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer")
    ns("ip", "addr", "add", NODE_CIDR, "dev", "node0")
    ns("ip", "link", "set", "node0", "up")
    ns("ip", "link", "set", "node0-peer", "up")
    ns("ip", "route", "add", "default", "dev", "node0")


def restore(saved: dict[str, str]) -> None:
    for key in SYSCTLS:
        try:
            Path("/proc/sys", key).write_text(saved[key])
        except OSError as exc:
            print(f"e2e host: could not restore {key}: {exc}", file=sys.stderr)


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("make e2e: the real node needs root (containerd, the kubelet, a network namespace)", file=sys.stderr)
        return 2
    missing = [p for p in PROGRAMS if not shutil.which(p)]
    if missing:
        print(
            f"make e2e: missing {', '.join(missing)}: apt-get install {' '.join(APT_PACKAGES)} (see docs/e2e.md)",
            file=sys.stderr,
        )
        return 2
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"make e2e: another run holds {LOCK} (pid {lock.read().strip() or '?'}); wait for it", file=sys.stderr)
        return 2
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    # A run that was killed outright (SIGKILL, a lost machine) left its namespace and cgroups: clear them first.
    remove_netns()
    kill_and_remove_cgroups()
    before = snapshot()
    child = None
    rc = 1

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        make_netns()
        env = {**os.environ, "KUBEFLOW_E2E_NETNS": NETNS}
        child = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable, "-m", "pytest", *argv], env=env)
        rc = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if child is not None and child.poll() is None:
            child.kill()
        remove_netns()
        if "/run/netns" not in before["mounts"].splitlines():
            # `ip netns add` bind-mounts /run/netns onto itself the first time; it is not the host's.
            sh("umount", "/run/netns", check=False)
        left = kill_and_remove_cgroups()
        restore(before)
        after = snapshot()
        changed = [k for k in before if before[k] != after[k]]
        if left or changed:
            print(f"e2e host: NOT restored: cgroups left {left}; changed {changed}", file=sys.stderr)
            for k in changed:
                print(f"--- {k} before:\n{before[k]}\n--- {k} after:\n{after[k]}", file=sys.stderr)
            rc = rc or 1
        else:
            print(
                "e2e host: restored (sysctls "
                + ", ".join(f"{k.replace('/', '.')}={before[k]}" for k in SYSCTLS)
                + "; iptables, links, routes, mounts, netns as before)"
            )
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
