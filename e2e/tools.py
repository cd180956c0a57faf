"""`make e2e-tools`: build the e2e toolchain from Go modules into a cache outside the work tree.

Every binary comes from the Go module proxy (no prebuilt downloads): the Pulumi CLI, the
pulumi-kubernetes provider plugin, etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and KWOK. Each is built inside a small wrapper module generated under
``<cache>/src/<tool>/`` because the upstream modules carry ``replace`` directives that point into
their own repositories (``pkg/v3 => ../sdk``, ``k8s.io/X => ./staging/...``), which Go ignores in
a dependency: the wrapper restates them against published versions.

Layout: ``$KUBEFLOW_E2E_TOOLS`` or ``~/.cache/kubeflow-e2e/tools/<versions>/`` with ``bin/`` (the
binaries), ``share/kwok-stages/`` (KWOK's stage YAML from its module) and ``src/`` (the wrappers).
Run ``python3 e2e/tools.py`` to build what is missing (one line per binary with its time),
``--print-dir`` to print the bin folder. Needs only python3 (stdlib) and go >= 1.26.6.

Sources of the facts below (read from the modules' go.mod files, 2026-11-29):
- ``github.com/pulumi/pulumi/pkg/v3`` v3.272.0 (the PyPI pin) is not served by the proxy; v3.274.0 is the
  nearest served. Its go.mod replaces ``sdk/v3 => ../sdk`` and ``atotto/clipboard => tgummerer/clipboard``.
- The Python language host module (``sdk/python/cmd/pulumi-language-python/v3``) is not served at any
  version, so the e2e harness runs the program through the Automation API's inline mode, whose language
  server lives in the Python process (no language host binary is needed).
- ``github.com/pulumi/pulumi-kubernetes/provider/v4`` is served only as
  v4.0.0-20260115033456-f47bc2d6f199 (tag v4.25.0). Its ``main.go`` embeds generated files that are not in the
  module, so the wrapper has its own ``main.go`` calling ``provider.Serve`` with the module's ``schema.json``.
- ``k8s.io/kubernetes`` requires every ``k8s.io/*`` staging module at v0.0.0 and replaces it with
  ``./staging/src/k8s.io/*``; the wrapper maps each to the published ``v0.<minor>.<patch>``.
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
KWOK = "v0.8.0"
# k8s.io/kubernetes v1.36.1 is the release whose k8s.io/* modules KWOK v0.8.0 requires (v0.36.1, the same
# kube-openapi): both are built in one wrapper module, so their shared packages compile once.
KUBERNETES = "v1.36.1"

PULUMI_PKG = "github.com/pulumi/pulumi/pkg/v3"
PULUMI_SDK = "github.com/pulumi/pulumi/sdk/v3"
PROVIDER_MOD = "github.com/pulumi/pulumi-kubernetes/provider/v4"
PROVIDER_SDK = "github.com/pulumi/pulumi-kubernetes/sdk/v4"

BINARIES = (
    "pulumi",
    "pulumi-resource-kubernetes",
    "etcd",
    "kwok",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
)


def versions_key() -> str:
    return f"pulumi-{PULUMI}_k8sprovider-{K8S_PROVIDER_RELEASE}_etcd-{ETCD}_kwok-{KWOK}_kube-{KUBERNETES}"


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


# KWOK's stages (its kustomize/stage/ folder): nodes become Ready and keep a lease; pods become Ready,
# Job pods Succeeded, deleted pods go away.
KWOK_STAGES = [
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
]


def copy_kwok_stages(root: Path, log) -> None:
    """Copies the KWOK stage files the harness uses into <tools>/share/kwok-stages (from the module cache)."""
    src = root / "src" / "kubernetes"
    src.mkdir(parents=True, exist_ok=True)
    stages = module_dir("sigs.k8s.io/kwok", KWOK, src, log) / "kustomize" / "stage"
    dest = root / "share" / "kwok-stages"
    dest.mkdir(parents=True, exist_ok=True)
    for rel in KWOK_STAGES:
        shutil.copyfile(stages / rel, dest / Path(rel).name)


def prep_kubernetes(src: Path, log) -> list[tuple[str, str, str]]:
    src.mkdir(parents=True, exist_ok=True)
    kdir = module_dir("k8s.io/kubernetes", KUBERNETES, src, log)
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", (kdir / "go.mod").read_text(), re.M)
    published = "v0." + KUBERNETES.split(".", 1)[1]  # v1.36.1 -> v0.36.1
    cmds = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    write_module(
        src,
        "kubernetes",
        {"k8s.io/kubernetes": KUBERNETES, "sigs.k8s.io/kwok": KWOK},
        {m: f"{m} {published}" for m in staging},
        {"tools.go": tools_go([f"k8s.io/kubernetes/cmd/{c}" for c in cmds] + ["sigs.k8s.io/kwok/cmd/kwok"])},
    )
    go(["mod", "tidy"], src, log)
    major, minor = KUBERNETES[1:].split(".")[:2]
    v = "k8s.io/component-base/version"
    stamp = (
        f"-X {v}.gitVersion={KUBERNETES} -X {v}.gitMajor={major} -X {v}.gitMinor={minor} "
        f"-X {v}.gitTreeState=clean -X {v}.buildDate=1970-01-01T00:00:00Z"
    )
    kwok = ("kwok", "sigs.k8s.io/kwok/cmd/kwok", f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK}")
    return [*[(c, f"k8s.io/kubernetes/cmd/{c}", stamp) for c in cmds], kwok]


STEPS = [
    ("pulumi", prep_pulumi, ["pulumi"]),
    ("pulumi-resource-kubernetes", prep_provider, ["pulumi-resource-kubernetes"]),
    ("etcd", prep_etcd, ["etcd"]),
    ("kubernetes", prep_kubernetes, ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]),
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
        try:
            copy_kwok_stages(root, log)
        except (RuntimeError, OSError) as exc:
            failed.append("kwok-stages")
            print(f"  kwok stages FAILED: {exc}", flush=True)
    missing = [b for b in BINARIES if not (bindir / b).exists()]
    print(
        f"e2e-tools: {time.monotonic() - started:.1f} s; "
        + (f"missing: {', '.join(missing)}" if missing else "all built"),
        flush=True,
    )
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
