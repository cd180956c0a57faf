"""`make e2e-images`: the images the real node runs, built without Docker by Debian's buildah.

- **The base** that our Dockerfiles name in `FROM` (`python:3.11.14-slim-bookworm`) cannot be pulled (no
  registry is reachable), so it is made here under that name: `debootstrap --variant=minbase bookworm` with
  Debian's own Python 3.11 and pip. It is the one stand-in among our images (Debian's CPython 3.11.2, not
  the official image's 3.11.14 in /usr/local).
- **Ours**: `buildah bud -f docker/<image>.Dockerfile` for trainer, sidecar and tensorboard, executing the
  Dockerfiles' own instructions, tagged as the dev stack names them (`image.*` defaults).
- **TF Serving's stand-in** (`e2e/serving.Dockerfile`): no TF Serving binary exists here, so `demo.serving`
  (TF Serving's REST API over the exported SavedModel) in the trainer image, answering to
  `tensorflow_model_server`'s flags.
- **The platform's**: the training operator, Argo's workflow-controller and argoexec, and the pod sandbox's
  pause binary, built by `make e2e-tools`, each on the base, under the names the upstream manifests use;
  MinIO's server and `mc`, from the newest source the module proxy serves, under their own tags.

Each image is exported once per image ID to `<tools>/images/<name>.tar` (an OCI archive, uncompressed) for
`ctr images import`. buildah's `--layers` cache makes an unchanged rebuild take about a second.

buildah runs with `--isolation chroot` (crun refuses this VM's hybrid cgroups), `--network host` (its
private network leaves iptables chains and `ip_forward` behind on the host), `--pull=never`, and the host's
CA bundle mounted over the image's for RUN steps (the package registry is reached through a TLS-intercepting
proxy whose CA only the host trusts); the mount leaves nothing in the image.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e import tools  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = "docker.io/library/python:3.11.14-slim-bookworm"
TAG = "0.1.0"
PAUSE = "registry.k8s.io/pause:3.10.1"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = [
    "ca-certificates",
    "netbase",
    "tzdata",
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
]

# name -> (reference the manifests use, how it is built)
OURS = {
    "trainer": f"docker.io/kubeflow-e2e/trainer:{TAG}",
    "sidecar": f"docker.io/kubeflow-e2e/sidecar:{TAG}",
    "tensorboard": f"docker.io/kubeflow-e2e/tensorboard:{TAG}",
}
SERVING = f"docker.io/kubeflow-e2e/serving-standin:{TAG}"
# Binaries from `make e2e-tools`, each in an image on the base: (image reference, binary, path in the image).
PLATFORM = {
    "training-operator": ("ghcr.io/kubeflow/training-v1/training-operator:v1-93c5489", "/manager"),
    "workflow-controller": (f"quay.io/argoproj/workflow-controller:{tools.ARGO}", "/bin/workflow-controller"),
    "argoexec": (f"quay.io/argoproj/argoexec:{tools.ARGO}", "/bin/argoexec"),
    # MinIO from its newest served source, under its own tag (the e2e sets image.minio and image.mc to these).
    "minio": (f"docker.io/kubeflow-e2e/minio:{tools.MINIO[-12:]}", "/usr/bin/minio"),
    "mc": (f"docker.io/kubeflow-e2e/mc:{tools.MC[-12:]}", "/usr/bin/mc"),
}


class ImageError(RuntimeError):
    pass


def images_dir() -> Path:
    return tools.tools_dir() / "images"


def sh(args: list[str], log, check: bool = True, **kw) -> subprocess.CompletedProcess:
    log.write(f"$ {' '.join(args)}\n")
    log.flush()
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    log.write(proc.stdout)
    log.flush()
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise ImageError(f"{' '.join(args[:3])} … failed (exit {proc.returncode}):\n{tail}")
    return proc


def image_id(ref: str, log) -> str | None:
    proc = sh(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref], log, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def annotation(key: str) -> str:
    """A `buildah inspect --format` template printing one image annotation."""
    return '{{index .ImageAnnotations "' + key + '"}}'


def base_recipe() -> str:
    recipe = json.dumps([BASE_PACKAGES, DEBIAN_MIRROR, "bookworm", "minbase", 1])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def build_base(log) -> str:
    """The stand-in for python:3.11.14-slim-bookworm; rebuilt only when its recipe changes (a label)."""
    recipe = base_recipe()
    proc = sh(
        ["buildah", "inspect", "--type", "image", "--format", annotation("kubeflow-e2e.recipe"), BASE],
        log,
        check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip() == recipe:
        return "cached"
    ctr = sh(["buildah", "from", "scratch"], log).stdout.strip().splitlines()[-1]
    try:
        mnt = sh(["buildah", "mount", ctr], log).stdout.strip().splitlines()[-1]
        sh(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                mnt,
                DEBIAN_MIRROR,
            ],
            log,
        )
        # Debian marks its Python as externally managed (PEP 668); the official image's pip installs freely.
        for marker in Path(mnt, "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        sh(["chroot", mnt, "sh", "-c", "apt-get clean && rm -rf /var/lib/apt/lists/*"], log)
        sh(["buildah", "umount", ctr], log)
        sh(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--annotation",
                f"kubeflow-e2e.recipe={recipe}",
                ctr,
            ],
            log,
        )
        sh(["buildah", "commit", "--rm", ctr, BASE], log)
    except BaseException:
        sh(["buildah", "rm", ctr], log, check=False)
        raise
    return "built"


def bud(dockerfile: Path, ref: str, log) -> None:
    sh(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--pull=never",
            "--layers",
            "-v",
            f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
            "-f",
            str(dockerfile),
            "-t",
            ref,
            str(ROOT),
        ],
        log,
        cwd=ROOT,
    )


def from_binary(ref: str, binary: Path, dest: str, log) -> None:
    """An image of the base with one static binary, rebuilt when the binary changes (its hash as a label)."""
    if not binary.exists():
        raise ImageError(f"{binary} is missing: run `make e2e-tools` first")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    proc = sh(
        ["buildah", "inspect", "--type", "image", "--format", annotation("kubeflow-e2e.binary"), ref],
        log,
        check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip() == digest:
        return
    ctr = sh(["buildah", "from", "--pull=never", BASE], log).stdout.strip().splitlines()[-1]
    try:
        sh(["buildah", "copy", "--chmod", "0755", ctr, str(binary), dest], log)
        sh(["buildah", "config", "--entrypoint", json.dumps([dest]), "--cmd", "", "--user", "65532:65532",
            "--annotation", f"kubeflow-e2e.binary={digest}", ctr], log)
        sh(["buildah", "commit", "--rm", ctr, ref], log)
    except BaseException:
        sh(["buildah", "rm", ctr], log, check=False)
        raise


def export(ref: str, log) -> Path:
    """`<images>/<id>.tar`, an uncompressed OCI archive named `ref` (written once per image ID)."""
    iid = image_id(ref, log)
    if not iid:
        raise ImageError(f"image {ref} is missing after its build")
    out = images_dir() / f"{ref.rsplit('/', 1)[1].replace(':', '_')}-{iid[:12]}.tar"
    if not out.exists():
        for old in images_dir().glob(f"{ref.rsplit('/', 1)[1].replace(':', '_')}-*.tar"):
            old.unlink()
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        sh(["buildah", "push", "--disable-compression", ref, f"oci-archive:{tmp}:{ref}"], log)
        tmp.replace(out)
    return out


def manifest() -> Path:
    return images_dir() / "images.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    bindir = tools.tools_dir() / "bin"
    images_dir().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done: dict[str, str] = {}
    with open(images_dir() / "build.log", "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        print(f"e2e-images: {images_dir()} (log: {images_dir() / 'build.log'})", flush=True)
        steps: list[tuple[str, str, object]] = [("base", BASE, lambda: build_base(log))]
        for name, ref in OURS.items():
            steps.append((name, ref, lambda n=name, r=ref: bud(ROOT / "docker" / f"{n}.Dockerfile", r, log)))
        steps.append(("serving (stand-in)", SERVING, lambda: bud(ROOT / "e2e" / "serving.Dockerfile", SERVING, log)))
        for name, (ref, dest) in PLATFORM.items():
            steps.append((name, ref, lambda n=name, r=ref, d=dest: from_binary(r, bindir / n, d, log)))
        steps.append(("pause", PAUSE, lambda: from_binary(PAUSE, bindir / "pause", "/pause", log)))
        failed = []
        for name, ref, step in steps:
            t0 = time.monotonic()
            try:
                step()
                if name != "base":
                    done[ref] = str(export(ref, log))
            except ImageError as exc:
                failed.append(name)
                print(f"  {name:<22} FAILED after {time.monotonic() - t0:.1f} s: {exc}", flush=True)
                if name == "base":
                    break
                continue
            print(f"  {name:<22} {ref}  {time.monotonic() - t0:6.1f} s", flush=True)
        # What was built is listed even when a step failed, so a rerun imports only what changed.
        manifest().write_text(json.dumps(done, indent=2) + "\n")
    print(f"e2e-images: {time.monotonic() - started:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
