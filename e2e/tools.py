"""`make e2e-tools`: build the e2e toolchain from Go modules into a cache outside the work tree.

Every binary comes from the Go module proxy (no prebuilt downloads), each built inside a small wrapper
module generated under ``<cache>/src/<tool>/``: the upstream modules carry ``replace`` directives into their
own repositories, which Go ignores in a dependency, so the wrapper restates them against published versions.
The tools, their versions and what each wrapper works around: docs/e2e.md, "The tools".

Layout: ``$KUBEFLOW_E2E_TOOLS`` or ``~/.cache/kubeflow-e2e/tools/<versions>/`` with ``bin/`` (the
binaries), ``images/`` (what ``e2e/images.py`` exports for containerd), ``containerd/`` (the node's image
store, kept between runs) and ``src/`` (the wrappers).
Run ``python3 e2e/tools.py`` to build what is missing (one line per binary with its time),
``--print-dir`` to print the bin folder. Needs only python3 (stdlib) and go >= 1.26.6.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

PULUMI = "v3.274.0"
K8S_PROVIDER = "v4.0.0-20260115033456-f47bc2d6f199"
K8S_PROVIDER_RELEASE = "4.25.0"
# provider/v4 requires sdk/v4 v4.24.0 (replaced by ../sdk upstream); v4.24.0 is not served, v4.22.2 is.
K8S_PROVIDER_SDK = "v4.22.2"
ETCD = "v3.6.16"
KUBERNETES = "v1.36.1"
# The Kubeflow training operator: tag v1.9.4 lives in github.com/kubeflow/trainer, whose go.mod still names the
# module github.com/kubeflow/training-operator, so the wrapper requires the old path and replaces it.
TRAINING_OPERATOR = "v1.9.4"
# Argo Workflows: v4.0.6 (the chart 1.0.18 release) is not served by the module proxy; v4.0.7 is the nearest
# served release after it, so the stack's chart values run v4.0.7 too (infra/argo.py, ARGO_VERSION).
ARGO = "v4.0.7"
ARGO_MOD = "github.com/argoproj/argo-workflows/v4"
# Cluster DNS for the real node's pods (Service names such as minio.<namespace>.svc).
COREDNS = "v1.15.0"
# MinIO's release tags are not served by the module proxy, only these pseudo-versions (its newest source and
# mc's): the e2e runs them under their own tags (image.minio / image.mc), not the stack's pinned releases.
MINIO = "v0.0.0-20260212201848-7aac2a2c5b7c"
MC = "v0.0.0-20250313080218-cf909e1063a9"

PULUMI_PKG = "github.com/pulumi/pulumi/pkg/v3"
PULUMI_SDK = "github.com/pulumi/pulumi/sdk/v3"
PROVIDER_MOD = "github.com/pulumi/pulumi-kubernetes/provider/v4"
PROVIDER_SDK = "github.com/pulumi/pulumi-kubernetes/sdk/v4"

BINARIES = (
    "pulumi",
    "pulumi-resource-kubernetes",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "pause",
    "training-operator",
    "workflow-controller",
    "argoexec",
    "argo",
    "coredns",
    "minio",
    "mc",
)


def versions_key() -> str:
    return (
        f"pulumi-{PULUMI}_k8sprovider-{K8S_PROVIDER_RELEASE}_etcd-{ETCD}_kube-{KUBERNETES}"
        f"_tfop-{TRAINING_OPERATOR}_argo-{ARGO}_coredns-{COREDNS}_minio-{MINIO[-12:]}_mc-{MC[-12:]}"
    )


def tools_dir() -> Path:
    if os.environ.get("KUBEFLOW_E2E_TOOLS"):
        return Path(os.environ["KUBEFLOW_E2E_TOOLS"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubeflow-e2e" / "tools" / versions_key()


def go(args: list[str], cwd: Path, log) -> str:
    env = {**os.environ, "GOFLAGS": os.environ.get("GOFLAGS", "") + " -mod=mod", "CGO_ENABLED": "0"}
    log.write(f"$ (cd {cwd} && go {' '.join(args)})\n")
    log.flush()
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise RuntimeError(f"go {' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def module_dir(mod: str, version: str, cwd: Path, log) -> Path:
    info = json.loads(go(["mod", "download", "-json", f"{mod}@{version}"], cwd, log))
    return Path(info["Dir"])


def write_module(
    src: Path, name: str, requires: dict[str, str], replaces: dict[str, str], files: dict[str, str]
) -> None:
    """Write go.mod (+ files) for one wrapper module; go mod tidy later fills go.sum and indirects."""
    src.mkdir(parents=True, exist_ok=True)
    lines = [f"module kubeflow-e2e/tools/{name}", "", "go 1.26.6", ""]
    lines += [f"require {m} {v}" for m, v in requires.items()]
    lines += [f"replace {m} => {v}" for m, v in replaces.items()]
    (src / "go.mod").write_text("\n".join(lines) + "\n")
    for fname, text in files.items():
        (src / fname).write_text(text)


def tools_go(pkgs: list[str]) -> str:
    imports = "\n".join(f'\t_ "{p}"' for p in pkgs)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def build(src: Path, out: Path, pkg: str, ldflags: str, log) -> None:
    tmp = out.with_name(out.name + ".tmp")
    if pkg == "":  # a C program (pause): static, so it runs in an image with nothing else in it
        cmd = ["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=" + KUBERNETES, "-o", str(tmp), "pause.c"]
        log.write(f"$ (cd {src} && {' '.join(cmd)})\n")
        proc = subprocess.run(cmd, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"gcc pause.c failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
        tmp.replace(out)
        return
    go(["build", "-p", "2", "-trimpath", "-ldflags", f"-s -w {ldflags}", "-o", str(tmp), pkg], src, log)
    tmp.replace(out)


# --- one function per wrapper module; each returns [(binary, package, ldflags)] ---------------------


def prep_pulumi(src: Path, log) -> list[tuple[str, str, str]]:
    clip = "github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"
    write_module(
        src,
        "pulumi",
        {PULUMI_PKG: PULUMI, PULUMI_SDK: PULUMI},
        {"github.com/atotto/clipboard": clip},
        {"tools.go": tools_go([f"{PULUMI_PKG}/cmd/pulumi"])},
    )
    go(["mod", "tidy"], src, log)
    stamp = f"-X {PULUMI_SDK}/go/common/version.Version={PULUMI}"
    return [("pulumi", f"{PULUMI_PKG}/cmd/pulumi", stamp)]


MAIN_PROVIDER = """// Wrapper main for pulumi-resource-kubernetes: the upstream main embeds generated files
// (schema-embed.json) that the module does not ship; this one embeds the module's schema.json
// with its version set by e2e/tools.py.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
"""


def prep_provider(src: Path, log) -> list[tuple[str, str, str]]:
    write_module(
        src,
        "pulumi-resource-kubernetes",
        {PROVIDER_MOD: K8S_PROVIDER},
        {PROVIDER_SDK: f"{PROVIDER_SDK} {K8S_PROVIDER_SDK}"},
        {"main.go": MAIN_PROVIDER},
    )
    mdir = module_dir(PROVIDER_MOD, K8S_PROVIDER, src, log) / "cmd" / "pulumi-resource-kubernetes"
    schema = json.loads((mdir / "schema.json").read_text())
    schema["version"] = K8S_PROVIDER_RELEASE
    (src / "schema-embed.json").write_text(json.dumps(schema, separators=(",", ":")))
    mapping = json.loads((mdir / "terraform-mapping.json").read_text())
    (src / "terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
    go(["mod", "tidy"], src, log)
    stamp = f"-X {PROVIDER_MOD}/pkg/version.Version={K8S_PROVIDER_RELEASE}"
    return [("pulumi-resource-kubernetes", ".", stamp)]


def prep_etcd(src: Path, log) -> list[tuple[str, str, str]]:
    mods = [
        "go.etcd.io/etcd/api/v3",
        "go.etcd.io/etcd/client/pkg/v3",
        "go.etcd.io/etcd/client/v3",
        "go.etcd.io/etcd/pkg/v3",
        "go.etcd.io/etcd/server/v3",
    ]
    write_module(src, "etcd", {m: ETCD for m in mods}, {}, {"tools.go": tools_go(["go.etcd.io/etcd/server/v3"])})
    go(["mod", "tidy"], src, log)
    return [("etcd", "go.etcd.io/etcd/server/v3", "")]


def prep_kubernetes(src: Path, log) -> list[tuple[str, str, str]]:
    src.mkdir(parents=True, exist_ok=True)
    kdir = module_dir("k8s.io/kubernetes", KUBERNETES, src, log)
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", (kdir / "go.mod").read_text(), re.M)
    published = "v0." + KUBERNETES.split(".", 1)[1]  # v1.36.1 -> v0.36.1
    cmds = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]
    write_module(
        src,
        "kubernetes",
        {"k8s.io/kubernetes": KUBERNETES},
        {m: f"{m} {published}" for m in staging},
        {"tools.go": tools_go([f"k8s.io/kubernetes/cmd/{c}" for c in cmds])},
    )
    go(["mod", "tidy"], src, log)
    major, minor = KUBERNETES[1:].split(".")[:2]
    v = "k8s.io/component-base/version"
    stamp = (
        f"-X {v}.gitVersion={KUBERNETES} -X {v}.gitMajor={major} -X {v}.gitMinor={minor} "
        f"-X {v}.gitTreeState=clean -X {v}.buildDate=1970-01-01T00:00:00Z"
    )
    return [(c, f"k8s.io/kubernetes/cmd/{c}", stamp) for c in cmds]


def prep_pause(src: Path, log) -> list[tuple[str, str, str]]:
    """The pod sandbox's pause binary, compiled from the kubernetes module's own build/pause/linux/pause.c
    (no registry is reachable for registry.k8s.io/pause). Returned with package "" : built by gcc, not go."""
    src.mkdir(parents=True, exist_ok=True)
    kdir = module_dir("k8s.io/kubernetes", KUBERNETES, src, log)
    shutil.copyfile(kdir / "build" / "pause" / "linux" / "pause.c", src / "pause.c")
    return [("pause", "", "")]


def prep_operator(src: Path, log) -> list[tuple[str, str, str]]:
    mod = "github.com/kubeflow/training-operator"
    write_module(
        src,
        "training-operator",
        {mod: TRAINING_OPERATOR},
        {mod: f"github.com/kubeflow/trainer {TRAINING_OPERATOR}"},
        {"tools.go": tools_go([f"{mod}/cmd/training-operator.v1"])},
    )
    go(["mod", "tidy"], src, log)
    return [("training-operator", f"{mod}/cmd/training-operator.v1", "")]


def prep_argo(src: Path, log) -> list[tuple[str, str, str]]:
    """Argo's controller, executor and CLI (whose `argo server` e2e/argoserver.py runs). The module zip drops git
    symlinks, and upstream's workflow/executor/osspecific/signal_linux.go is one (to signal_darwin.go): without it
    argoexec fails with `undefined: Setpgid`. So the wrapper builds against a copy of the module with that file
    restored. The zip has no ui/dist/app either (the UI's webpack output, which ui/embed.go embeds and upstream
    builds with yarn): the copy gets a one-page stand-in, so the CLI's server serves its real API and no UI."""
    src.mkdir(parents=True, exist_ok=True)
    write_module(src, "argo-probe", {ARGO_MOD: ARGO}, {}, {})
    mdir = module_dir(ARGO_MOD, ARGO, src, log)
    copy = src.parent / "argo-module"
    if not (copy / "go.mod").exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(mdir, copy)
        for path in copy.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
    osdir = copy / "workflow" / "executor" / "osspecific"
    if not (osdir / "signal_linux.go").exists():
        shutil.copyfile(osdir / "signal_darwin.go", osdir / "signal_linux.go")
    app = copy / "ui" / "dist" / "app"
    if not (app / "index.html").exists():
        app.mkdir(parents=True, exist_ok=True)
        (app / "index.html").write_text(
            "<!doctype html><title>Argo</title><p>A stand-in for the UI (e2e/tools.py); the API is real.</p>\n"
        )
    write_module(
        src,
        "argo",
        {ARGO_MOD: ARGO},
        {ARGO_MOD: str(copy)},
        {"tools.go": tools_go([f"{ARGO_MOD}/cmd/{b}" for b in ("workflow-controller", "argoexec", "argo")])},
    )
    go(["mod", "tidy"], src, log)
    # Unstamped, the controller names its executor image quay.io/argoproj/argoexec:v0.0.0.
    stamp = f"-X {ARGO_MOD}.version={ARGO}"
    return [(b, f"{ARGO_MOD}/cmd/{b}", stamp) for b in ("workflow-controller", "argoexec", "argo")]


def prep_coredns(src: Path, log) -> list[tuple[str, str, str]]:
    mod = "github.com/coredns/coredns"
    write_module(src, "coredns", {mod: COREDNS}, {}, {"tools.go": tools_go([mod])})
    go(["mod", "tidy"], src, log)
    return [("coredns", mod, f"-X {mod}/coremain.GitCommit={COREDNS}")]


def prep_minio(src: Path, log) -> list[tuple[str, str, str]]:
    """MinIO's server and client in one wrapper: they share most of their packages, which then compile once."""
    server, client = "github.com/minio/minio", "github.com/minio/mc"
    write_module(src, "minio", {server: MINIO, client: MC}, {}, {"tools.go": tools_go([server, client])})
    go(["mod", "tidy"], src, log)
    return [("minio", server, ""), ("mc", client, "")]


STEPS = [
    ("pulumi", prep_pulumi, ["pulumi"]),
    ("pulumi-resource-kubernetes", prep_provider, ["pulumi-resource-kubernetes"]),
    ("etcd", prep_etcd, ["etcd"]),
    (
        "kubernetes",
        prep_kubernetes,
        ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"],
    ),
    ("pause", prep_pause, ["pause"]),
    ("training-operator", prep_operator, ["training-operator"]),
    ("argo", prep_argo, ["workflow-controller", "argoexec", "argo"]),
    ("coredns", prep_coredns, ["coredns"]),
    ("minio", prep_minio, ["minio", "mc"]),
]


def child_cpu() -> float:
    """User + system CPU seconds of every finished child process so far (go and its compilers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print-dir", action="store_true", help="print the bin folder and exit")
    ap.add_argument("--only", action="append", help="build only this wrapper (repeatable)")
    args = ap.parse_args(argv)
    root = tools_dir()
    bindir = root / "bin"
    if args.print_dir:
        print(bindir)
        return 0
    bindir.mkdir(parents=True, exist_ok=True)
    failed = []
    started = time.monotonic()
    with open(root / "build.log", "a") as log:
        # One build at a time per cache folder: a second `make e2e-tools` waits, then finds the binaries.
        fcntl.flock(log, fcntl.LOCK_EX)
        print(f"e2e-tools: {root} (log: {root / 'build.log'})", flush=True)
        for name, prep, binaries in STEPS:
            if args.only and name not in args.only:
                continue
            if all((bindir / b).exists() for b in binaries):
                for b in binaries:
                    print(f"  {b:<28} cached", flush=True)
                continue
            t0 = time.monotonic()
            try:
                targets = prep(root / "src" / name, log)
                prep_s = time.monotonic() - t0
                for binary, pkg, ldflags in targets:
                    out = bindir / binary
                    if out.exists():
                        print(f"  {binary:<28} cached", flush=True)
                        continue
                    t1, cpu1 = time.monotonic(), child_cpu()
                    build(root / "src" / name, out, pkg, ldflags, log)
                    # CPU seconds of the go processes: on a loaded machine, wall time says little.
                    print(
                        f"  {binary:<28} built in {time.monotonic() - t1 + prep_s:7.1f} s "
                        f"(CPU {child_cpu() - cpu1:6.0f} s, {out.stat().st_size / 1e6:.0f} MB)",
                        flush=True,
                    )
                    prep_s = 0.0
            except RuntimeError as exc:
                failed.append(name)
                print(f"  {name:<28} FAILED after {time.monotonic() - t0:.1f} s: {exc}", flush=True)
    missing = [b for b in BINARIES if not (bindir / b).exists()]
    print(
        f"e2e-tools: {time.monotonic() - started:.1f} s; "
        + (f"missing: {', '.join(missing)}" if missing else "all built"),
        flush=True,
    )
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
